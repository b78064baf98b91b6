import type { Db } from '../db/client.ts';
import type { Database, Json } from '../db/database.types.ts';
import { rpcResult } from '../db/rpc-result.ts';
import type { Result } from '../domain/result.ts';
import type { WebhookEventType } from './event-types.ts';

export type WebhookEvent = Database['public']['Functions']['record_webhook_event']['Returns'];

export interface RecordWebhookEventInput {
  db: Db;
  type: WebhookEventType;
  /** Names the cause: a retry with the same key returns the event recorded first. */
  idempotencyKey: string;
  payload: Json;
  tenantId?: string;
  /** Only these endpoints, whatever they subscribe to; every subscriber when absent. */
  endpointIds?: string[];
}

/**
 * Records an event whose cause happens in the application (the SQL side records its own
 * in the transaction of the change) and its deliveries, in one call.
 */
export async function recordWebhookEvent(
  input: RecordWebhookEventInput,
): Promise<Result<WebhookEvent>> {
  return rpcResult(
    await input.db.rpc('record_webhook_event', {
      event_type: input.type,
      idempotency_key: input.idempotencyKey,
      payload: input.payload,
      ...(input.tenantId ? { tenant_id: input.tenantId } : {}),
      ...(input.endpointIds ? { endpoint_ids: input.endpointIds } : {}),
    }),
  );
}
