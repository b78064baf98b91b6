import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();

/**
 * Compares a presented secret with every accepted one in constant time: the digests have
 * equal length whatever the inputs, and every candidate is compared, so neither the length
 * nor the position of a match leaks through timing.
 */
export function matchesAnySecret(
  presented: string | null | undefined,
  accepted: readonly string[],
): boolean {
  const candidate = digest(presented ?? '');
  let matched = false;
  for (const secret of accepted) {
    if (secret.length > 0 && timingSafeEqual(candidate, digest(secret))) matched = true;
  }
  return matched && typeof presented === 'string' && presented.length > 0;
}
