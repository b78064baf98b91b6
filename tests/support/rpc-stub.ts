import type { PostgrestError } from '@supabase/supabase-js';

/** What supabase-js hands back as the error of a PostgREST answer with this code. */
export const postgrestError = (code: string, message = `failed with ${code}`) =>
  ({ name: 'PostgrestError', code, message, details: '', hint: '' }) as PostgrestError;

/**
 * A supabase client of type `Db` that records its rpc calls and answers every one with
 * `response`, under `errorStatus` when the response carries an error.
 */
export function stubRpcClient<Db>(
  response: { data: unknown; error: unknown },
  errorStatus: number,
) {
  const calls: Array<{ fn: string; args: unknown }> = [];
  const client = {
    rpc: async (fn: string, args: unknown) => {
      calls.push({ fn, args });
      return { ...response, status: response.error ? errorStatus : 200 };
    },
  } as unknown as Db;
  return { client, calls };
}
