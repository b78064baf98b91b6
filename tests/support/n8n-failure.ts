import { expect } from 'vitest';
import { N8nApiError } from '../../src/n8n/client.ts';

/** The N8nApiError a call to the n8n client rejects with; a call that resolves fails the test. */
export async function failureOf(promise: Promise<unknown>): Promise<N8nApiError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(N8nApiError);
  return error as N8nApiError;
}
