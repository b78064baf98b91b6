import { describe, expect, it } from 'vitest';
import { matchesAnySecret } from '../../src/security/shared-secret.ts';

describe('matchesAnySecret', () => {
  const secrets = ['a'.repeat(40), 'b'.repeat(40)];
  it('accepts any of the active secrets (rotation)', () => {
    expect(matchesAnySecret('a'.repeat(40), secrets)).toBe(true);
    expect(matchesAnySecret('b'.repeat(40), secrets)).toBe(true);
  });
  it.each([
    ['a wrong secret', 'c'.repeat(40)],
    ['a prefix', 'a'.repeat(39)],
    ['a longer value', 'a'.repeat(41)],
    ['an empty string', ''],
    ['nothing', null],
    ['undefined', undefined],
  ])('refuses %s', (_, presented) => {
    expect(matchesAnySecret(presented, secrets)).toBe(false);
  });
  it('refuses everything when no secret is configured, even an empty one', () => {
    expect(matchesAnySecret('', [''])).toBe(false);
    expect(matchesAnySecret('x', [])).toBe(false);
  });
});
