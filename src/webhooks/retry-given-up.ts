import type { Db } from '../db/client.ts';
import { rpcResult } from '../db/rpc-result.ts';
import type { Result } from '../domain/result.ts';

/** The endpoint's given-up deliveries start over, due now (once its receiver is fixed). */
export async function retryGivenUp(input: { db: Db; endpointId: string }): Promise<Result<number>> {
  return rpcResult(
    await input.db.rpc('retry_webhook_deliveries', { endpoint_id: input.endpointId }),
  );
}
