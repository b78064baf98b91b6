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
