import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { rpcResult } from '../db/rpc-result.ts';
import type { Result } from '../domain/result.ts';

export type ListedEndpoint =
  Database['public']['Functions']['list_webhook_endpoints']['Returns'][number];

/** Endpoints with what each has delivered, is retrying and gave up on. */
export async function listEndpoints(input: {
  db: Db;
  endpointIds?: string[];
}): Promise<Result<ListedEndpoint[]>> {
  return rpcResult(
    await input.db.rpc(
      'list_webhook_endpoints',
      input.endpointIds ? { endpoint_ids: input.endpointIds } : {},
    ),
  );
}
