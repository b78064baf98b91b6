import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { parser, schemas } from '../../src/cli/arguments.ts';

/**
 * Names, external references and tenants given on the command line: trimmed, 1 to 200
 * characters, in the characters an identifier may hold, each refusal saying what to give.
 */

function refusal(parse: (value: string) => unknown, value: string): string {
  try {
    parse(value);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidArgumentError);
    return (error as Error).message;
  }
  throw new Error(`${JSON.stringify(value)} was accepted`);
}

describe('identifier arguments', () => {
  const name = parser(schemas.name);
  const externalRef = parser(schemas.externalRef);
  const tenant = parser(schemas.tenant);

  it('are trimmed and kept up to 200 characters', () => {
    expect(name('  Acme GmbH  ')).toBe('Acme GmbH');
    expect(externalRef(` ${'r'.repeat(200)} `)).toBe('r'.repeat(200));
    expect(tenant('acme')).toBe('acme');
  });

  it('refuse an empty or blank value, and one over 200 characters, saying what is wanted', () => {
    for (const parse of [name, externalRef]) {
      expect(refusal(parse, '   ')).toBe('must not be empty');
      expect(refusal(parse, 'x'.repeat(201))).toBe('must be at most 200 characters');
    }
    const tenantExpected =
      'must be a tenant id or external reference (see `flowmeter tenants list`)';
    expect(refusal(tenant, '')).toBe(tenantExpected);
    expect(refusal(tenant, 'x'.repeat(201))).toBe(tenantExpected);
  });

  it('refuse a character an identifier may not hold, naming it', () => {
    for (const parse of [name, externalRef, tenant]) {
      expect(refusal(parse, 'acme\u0007co')).toMatch(/U\+0007/);
    }
  });
});
