import { randomUUID } from 'node:crypto';
import type { Db } from '../db/client.ts';
import type { Result } from '../domain/result.ts';
import { recordWebhookEvent, type WebhookEvent } from './record-event.ts';

/**
 * A webhook.test event for one endpoint, whatever it subscribes to. The key is the caller's
 * attempt: the same key (a retried call) records one event.
 */
export function sendTestEvent(input: {
  db: Db;
  endpointId: string;
  attemptKey?: string;
}): Promise<Result<WebhookEvent>> {
  return recordWebhookEvent({
    db: input.db,
    type: 'webhook.test',
    idempotencyKey: `webhook.test:${input.endpointId}:${input.attemptKey ?? randomUUID()}`,
    endpointIds: [input.endpointId],
    payload: {
      endpoint_id: input.endpointId,
      message: 'A test event from flowmeter: this endpoint receives and verifies webhooks.',
    },
  });
}
