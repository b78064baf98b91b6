import type { Db } from '../db/client.ts';
import { rpcResult } from '../db/rpc-result.ts';
import type { Result } from '../domain/result.ts';
import type { WebhookEndpoint } from './add-endpoint.ts';

/** A disabled endpoint gets no deliveries for new events; its due ones wait until enabled. */
export async function setEndpointEnabled(input: {
  db: Db;
  endpointId: string;
  enabled: boolean;
}): Promise<Result<WebhookEndpoint>> {
  return rpcResult(
    await input.db.rpc('set_webhook_endpoint_enabled', {
      endpoint_id: input.endpointId,
      enabled: input.enabled,
    }),
  );
}
