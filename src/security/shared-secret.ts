import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();

/**
 * Compares a presented secret with every accepted one in constant time: the digests have
 * equal length whatever the inputs, and every candidate is compared, so neither the length
 * nor the position of a match leaks through timing. The accepted secrets' digests are
 * computed once, for hot paths.
 */
export function secretMatcher(
  accepted: readonly string[],
): (presented: string | null | undefined) => boolean {
  const digests = accepted.filter((s) => s.length > 0).map(digest);
  return (presented) => {
    const candidate = digest(presented ?? '');
    let matched = false;
    for (const expected of digests) {
      if (timingSafeEqual(candidate, expected)) matched = true;
    }
    return matched && typeof presented === 'string' && presented.length > 0;
  };
}

export const matchesAnySecret = (
  presented: string | null | undefined,
  accepted: readonly string[],
): boolean => secretMatcher(accepted)(presented);
