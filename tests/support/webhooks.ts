import { randomBytes } from 'node:crypto';
import { delay, HttpResponse, http } from 'msw';
import type { setupServer } from 'msw/node';
import { Webhook } from 'standardwebhooks';
import { parseKeyring } from '../../src/crypto/keyring.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { addEndpoint } from '../../src/webhooks/add-endpoint.ts';
import type { DeliverWebhooksInput } from '../../src/webhooks/deliver-webhooks.ts';
import type { WebhookEventType } from '../../src/webhooks/event-types.ts';
import { serviceClient, superuser, uniqueId } from './stack.ts';

export const webhookKeyring = parseKeyring(`k1:${randomBytes(32).toString('base64')}`);

/** What an attempt of the receiver does: answer 2xx, answer 500, or never answer. */
export type ReceiverAnswer = 'ok' | 'error' | 'hang';

export interface ReceivedRequest {
  id: string;
  timestamp: string;
  signature: string;
  body: string;
  answer: ReceiverAnswer;
  /** The secrets (by index in `secrets`) this request's signatures verify with. */
  verifiedWith: number[];
}

/**
 * An operator's receiver behind msw: verifies every request with the standardwebhooks
 * library, as an operator's code would, against every secret it was ever given, and answers
 * as `answer` decides.
 */
export function fakeReceiver(
  server: ReturnType<typeof setupServer>,
  answer: (request: { id: string; attempt: number }) => ReceiverAnswer = () => 'ok',
) {
  const url = `https://${uniqueId('receiver')}.example.test/hooks/flowmeter`;
  const secrets: string[] = [];
  const requests: ReceivedRequest[] = [];
  server.use(
    http.post(url, async ({ request }) => {
      const body = await request.text();
      const headers = Object.fromEntries(request.headers.entries());
      const id = headers['webhook-id'] ?? '';
      const verifiedWith = secrets.flatMap((secret, i) => {
        try {
          new Webhook(secret).verify(body, headers);
          return [i];
        } catch {
          return [];
        }
      });
      const attempt = requests.filter((r) => r.id === id).length + 1;
      const decided = answer({ id, attempt });
      requests.push({
        id,
        timestamp: headers['webhook-timestamp'] ?? '',
        signature: headers['webhook-signature'] ?? '',
        body,
        answer: decided,
        verifiedWith,
      });
      if (decided === 'hang') {
        await delay('infinite');
      }
      return decided === 'ok'
        ? new HttpResponse(null, { status: 204 })
        : HttpResponse.text('receiver exploded', { status: 500 });
    }),
  );
  return { url, secrets, requests };
}

/** An endpoint for the receiver, its secret handed to the receiver. */
export async function receiverEndpoint(
  receiver: ReturnType<typeof fakeReceiver>,
  eventTypes: WebhookEventType[] = ['webhook.test'],
) {
  const added = await addEndpoint({
    db: serviceClient(),
    keyring: webhookKeyring,
    mode: 'local',
    resolve: async () => ['127.0.0.1'],
    url: receiver.url,
    eventTypes,
  });
  if (!added.ok) throw new Error(`addEndpoint: ${added.error.message}`);
  receiver.secrets.push(added.value.secret);
  return added.value.endpoint;
}

/** A delivery run in local mode over these endpoints only: other files' are theirs. */
export const deliveryInput = (
  endpointIds: string[],
  overrides: Partial<DeliverWebhooksInput> = {},
): DeliverWebhooksInput => ({
  db: serviceClient(),
  keyring: webhookKeyring,
  mode: 'local',
  fetch: (input, init) => globalThis.fetch(input, init),
  log: silentLogger,
  timeoutMs: 2000,
  endpointIds,
  ...overrides,
});

/** What the passing of time does: backoffs over, leases of vanished senders expired. */
export async function timePasses(endpointIds: string[]) {
  await superuser().query(
    `update public.webhook_deliveries
     set next_attempt_at = case when status = 'failed' and next_attempt_at is not null then now() else next_attempt_at end,
         lease_expires_at = case when status = 'sending' then now() - interval '1 second' else lease_expires_at end
     where endpoint_id = any ($1::uuid[]) and status in ('failed', 'sending')`,
    [endpointIds],
  );
}

export async function deliveriesOf(endpointIds: string[]) {
  const { rows } = await superuser().query(
    `select d.event_id, d.endpoint_id, d.status, d.attempts, d.next_attempt_at, d.last_attempt_at,
            d.last_status, d.last_error, e.body
     from public.webhook_deliveries d join public.webhook_events e on e.id = d.event_id
     where d.endpoint_id = any ($1::uuid[]) order by d.created_at, d.event_id`,
    [endpointIds],
  );
  return rows;
}
