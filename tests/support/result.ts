import type { Result } from '../../src/domain/result.ts';

/** A service's value; its failure fails the test with the service's own message. */
export async function succeeded<T>(
  result: Result<T, string> | Promise<Result<T, string>>,
): Promise<T> {
  const settled = await result;
  if (!settled.ok) throw new Error(settled.error.message);
  return settled.value;
}
