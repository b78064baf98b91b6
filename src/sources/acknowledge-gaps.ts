import type { Db } from '../db/client.ts';
import { rpcResult } from '../db/rpc-result.ts';
import type { Result } from '../domain/result.ts';

export interface AcknowledgeGapsInput {
  db: Db;
  /** Only these sources; every source when absent. */
  sourceIds?: string[];
  /** Only these tenants' sources; every tenant when absent. */
  tenantIds?: string[];
}

/** Marks recorded collection gaps as seen, so status flags only gaps recorded afterwards. */
export async function acknowledgeGaps(input: AcknowledgeGapsInput): Promise<Result<number>> {
  return rpcResult(
    await input.db.rpc('acknowledge_collection_gaps', {
      ...(input.sourceIds ? { source_ids: input.sourceIds } : {}),
      ...(input.tenantIds ? { tenant_ids: input.tenantIds } : {}),
    }),
  );
}
