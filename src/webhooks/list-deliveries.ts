import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { rpcResult } from '../db/rpc-result.ts';
import type { Result } from '../domain/result.ts';

export type ListedDelivery =
  Database['public']['Functions']['list_webhook_deliveries']['Returns'][number];

/** Deliveries newest first, optionally only the failing and given-up ones. */
export async function listDeliveries(input: {
  db: Db;
  endpointIds?: string[];
  failedOnly: boolean;
  maxRows: number;
}): Promise<Result<ListedDelivery[]>> {
  return rpcResult(
    await input.db.rpc('list_webhook_deliveries', {
      failed_only: input.failedOnly,
      max_rows: input.maxRows,
      ...(input.endpointIds ? { endpoint_ids: input.endpointIds } : {}),
    }),
  );
}
