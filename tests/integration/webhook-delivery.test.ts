import { HttpResponse, http } from 'msw';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { needsAttention } from '../../src/ops/attention.ts';
import { operatorStatusSchema } from '../../src/ops/operator-status.ts';
import { addEndpoint } from '../../src/webhooks/add-endpoint.ts';
import { deliverWebhooks, drainWebhooks } from '../../src/webhooks/deliver-webhooks.ts';
import { listDeliveries } from '../../src/webhooks/list-deliveries.ts';
import { publicOnlyFetch } from '../../src/webhooks/public-fetch.ts';
import { recordWebhookEvent } from '../../src/webhooks/record-event.ts';
import { retryGivenUp } from '../../src/webhooks/retry-given-up.ts';
import { rotateSecret } from '../../src/webhooks/rotate-secret.ts';
import { sendTestEvent } from '../../src/webhooks/send-test-event.ts';
import { setEndpointEnabled } from '../../src/webhooks/set-endpoint-enabled.ts';
import { useN8nServer } from '../support/collector.ts';
import { dropRequest, faultyDb, loseResponse, Rng, rpcFetch } from '../support/faults.ts';
import { createTenant } from '../support/fixtures.ts';
import { succeeded } from '../support/result.ts';
import { serviceClient, superuser } from '../support/stack.ts';
import { operatorStatusOf } from '../support/status.ts';
import {
  deliveriesOf,
  deliveryInput,
  fakeReceiver,
  type ReceiverAnswer,
  receiverEndpoint,
  timePasses,
  webhookKeyring,
} from '../support/webhooks.ts';

/**
 * Delivery end to end: events recorded in the outbox, deliverWebhooks against receivers
 * behind msw that verify every request with the standardwebhooks library, faults injected
 * at the receiver (500s, no answer) and between the send and its record (the outcome's
 * request dropped or its answer lost, as a crash would leave it).
 */
const server = useN8nServer();

/** One delivery run; its failure (a claim that failed) fails the test. */
const deliver = (input: Parameters<typeof deliverWebhooks>[0]) => succeeded(deliverWebhooks(input));

const RETRY_DELAYS_SECONDS = [5, 300, 1800, 7200, 18000, 36000, 36000];

async function recordEvents(endpointIds: string[], n: number, label: string) {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const event = await recordWebhookEvent({
      db: serviceClient(),
      type: 'collection.gap_recorded',
      idempotencyKey: `test:${label}:${i}`,
      endpointIds,
      payload: { sequence: i, label, note: 'ünïcödé bytes sign as sent' },
    });
    if (!event.ok) throw new Error(event.error.message);
    ids.push(event.value.id);
  }
  return ids;
}

/**
 * A receiver's endpoint with one test event due, after `change` (SQL, the endpoint's id as $1)
 * put it in the state the test is about.
 */
async function testEventAfter(change: string) {
  const receiver = fakeReceiver(server);
  const endpoint = await receiverEndpoint(receiver);
  await superuser().query(change, [endpoint.id]);
  await sendTestEvent({ db: serviceClient(), endpointId: endpoint.id });
  return { receiver, endpoint };
}

describe('webhook delivery', () => {
  it('POSTs the stored body with Standard Webhooks headers that the library verifies', async () => {
    const receiver = fakeReceiver(server);
    const endpoint = await receiverEndpoint(receiver);
    const event = await sendTestEvent({ db: serviceClient(), endpointId: endpoint.id });
    if (!event.ok) throw new Error(event.error.message);

    const summary = await deliver(deliveryInput([endpoint.id]));

    expect(summary).toEqual({ claimed: 1, delivered: 1, failed: 0, gaveUp: 0, deferred: 0 });
    const [request] = receiver.requests;
    expect(request?.id).toBe(event.value.id);
    expect(request?.id).toMatch(/^msg_[0-9a-f]{32}$/);
    expect(request?.body).toBe(event.value.body);
    expect(request?.verifiedWith).toEqual([0]);
    const parsed = new Webhook(receiver.secrets[0] as string).verify(request?.body as string, {
      'webhook-id': request?.id as string,
      'webhook-timestamp': request?.timestamp as string,
      'webhook-signature': request?.signature as string,
    });
    expect(parsed).toMatchObject({
      type: 'webhook.test',
      data: { endpoint_id: endpoint.id },
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/),
    });
    const [delivery] = await deliveriesOf([endpoint.id]);
    expect(delivery).toMatchObject({ status: 'delivered', attempts: 1, last_status: 204 });
  });

  it('events a run had no time to send go back unsent, a give-back whose answer was lost tried again harmlessly, and the next run sends each once', async () => {
    const receiver = fakeReceiver(server);
    const endpoint = await receiverEndpoint(receiver);
    await recordEvents([endpoint.id], 3, `late-${endpoint.id}`);
    const db = faultyDb(
      rpcFetch((call, send) =>
        call.fn === 'return_webhook_deliveries' && call.indexOfFn === 1
          ? loseResponse(call, send)
          : send(),
      ),
    );
    const late = await deliver(deliveryInput([endpoint.id], { db, startBy: 0 }));
    expect(late).toEqual({ claimed: 3, delivered: 0, failed: 0, gaveUp: 0, deferred: 3 });
    expect(receiver.requests).toEqual([]);
    expect((await deliveriesOf([endpoint.id])).map((d) => [d.status, d.attempts])).toEqual([
      ['pending', 0],
      ['pending', 0],
      ['pending', 0],
    ]);

    expect(await deliver(deliveryInput([endpoint.id]))).toMatchObject({ delivered: 3 });
    expect(receiver.requests).toHaveLength(3);
    expect((await deliveriesOf([endpoint.id])).map((d) => [d.status, d.attempts])).toEqual([
      ['delivered', 1],
      ['delivered', 1],
      ['delivered', 1],
    ]);
  });

  it('records an event once per idempotency key, however often it is retried', async () => {
    const receiver = fakeReceiver(server);
    const endpoint = await receiverEndpoint(receiver);
    const first = await sendTestEvent({
      db: serviceClient(),
      endpointId: endpoint.id,
      attemptKey: 'retry-1',
    });
    const again = await sendTestEvent({
      db: serviceClient(),
      endpointId: endpoint.id,
      attemptKey: 'retry-1',
    });
    expect(first.ok && again.ok && again.value.id === first.value.id).toBe(true);
    expect(await deliveriesOf([endpoint.id])).toHaveLength(1);
  });

  it.each(Array.from({ length: 12 }, (_, i) => i + 1))(
    'seed %i: 500s, timeouts, lost outcomes and a rotation still deliver every event, same id and body, validly signed',
    async (seed) => {
      const rng = new Rng(seed);
      const answer = ({ attempt }: { attempt: number }): ReceiverAnswer =>
        attempt > 2
          ? 'ok'
          : rng.weighted([
              [5, 'ok'],
              [3, 'error'],
              [2, 'hang'],
            ] as const);
      const a = fakeReceiver(server, answer);
      const b = fakeReceiver(server, answer);
      const endpoints = [await receiverEndpoint(a), await receiverEndpoint(b)];
      const endpointIds = endpoints.map((e) => e.id);
      const eventIds = await recordEvents(endpointIds, rng.int(3, 6), `seed-${seed}`);
      const db = faultyDb(
        rpcFetch(async (call, send) => {
          if (call.fn === 'finish_webhook_delivery') {
            const fault = rng.weighted([
              [6, 'none'],
              [2, 'drop'],
              [2, 'lose'],
            ] as const);
            if (fault === 'drop') return dropRequest(call);
            if (fault === 'lose') return loseResponse(call, send);
          }
          if (call.fn === 'claim_webhook_deliveries' && rng.chance(0.1)) {
            return loseResponse(call, send);
          }
          return send();
        }),
      );

      const rotateAtRound = rng.int(1, 3);
      let rotatedAtRequest = -1;
      for (let round = 0; round < 40; round++) {
        if (round === rotateAtRound) {
          const rotated = await rotateSecret({
            db: serviceClient(),
            keyring: webhookKeyring,
            endpointId: endpoints[0]?.id as string,
            graceSeconds: 3600,
          });
          if (!rotated.ok) throw new Error(rotated.error.message);
          a.secrets.push(rotated.value.secret);
          rotatedAtRequest = a.requests.length;
        }
        // A claim whose answer was lost fails this round; the next claims again.
        await deliverWebhooks(deliveryInput(endpointIds, { db, timeoutMs: 500 }));
        const rows = await deliveriesOf(endpointIds);
        if (round > rotateAtRound && rows.every((r) => r.status === 'delivered')) break;
        await timePasses(endpointIds);
      }

      const rows = await deliveriesOf(endpointIds);
      expect(rows.map((r) => r.status)).toEqual(rows.map(() => 'delivered'));
      expect(rows).toHaveLength(eventIds.length * 2);
      const bodies = new Map(rows.map((r) => [r.event_id as string, r.body as string]));
      for (const receiver of [a, b]) {
        const ids = new Set(receiver.requests.map((r) => r.id));
        expect([...ids].sort()).toEqual([...eventIds].sort());
        for (const request of receiver.requests) {
          expect(request.body).toBe(bodies.get(request.id));
          expect(request.verifiedWith).toContain(0);
        }
        for (const id of eventIds) {
          expect(receiver.requests.some((r) => r.id === id && r.answer === 'ok')).toBe(true);
        }
      }
      for (const request of a.requests.slice(rotatedAtRequest)) {
        expect(request.verifiedWith).toEqual([0, 1]);
        expect(request.signature.split(' ')).toHaveLength(2);
      }
    },
    60_000,
  );

  it('retries on the Standard Webhooks schedule with jitter, gives up after the 8th attempt, and starts over when asked', async () => {
    let healthy = false;
    const receiver = fakeReceiver(server, () => (healthy ? 'ok' : 'error'));
    const endpoint = await receiverEndpoint(receiver);
    await sendTestEvent({ db: serviceClient(), endpointId: endpoint.id });

    for (let attempt = 1; attempt <= 8; attempt++) {
      const summary = await deliver(deliveryInput([endpoint.id]));
      expect(summary.claimed).toBe(1);
      const [row] = await deliveriesOf([endpoint.id]);
      expect(row).toMatchObject({ status: 'failed', attempts: attempt, last_status: 500 });
      expect(row?.last_error).toMatch(/HTTP 500: receiver exploded/);
      if (attempt < 8) {
        const waited = (row?.next_attempt_at.getTime() - row?.last_attempt_at.getTime()) / 1000;
        const planned = RETRY_DELAYS_SECONDS[attempt - 1] as number;
        expect(waited).toBeGreaterThanOrEqual(planned * 0.8 - 1);
        expect(waited).toBeLessThanOrEqual(planned * 1.2 + 1);
        expect(summary.failed).toBe(1);
      } else {
        expect(row?.next_attempt_at).toBeNull();
        expect(summary.gaveUp).toBe(1);
      }
      await timePasses([endpoint.id]);
    }
    expect(await deliver(deliveryInput([endpoint.id]))).toMatchObject({ claimed: 0 });
    const failed = await listDeliveries({
      db: serviceClient(),
      endpointIds: [endpoint.id],
      failedOnly: true,
      maxRows: 10,
    });
    expect(failed.ok && failed.value.map((d) => d.status)).toEqual(['given_up']);
    const status = operatorStatusSchema.parse((await serviceClient().rpc('operator_status')).data);
    expect(status.webhook_deliveries.failing_endpoints).toContainEqual(
      expect.objectContaining({ id: endpoint.id, given_up: 1, retrying: 0 }),
    );
    expect(needsAttention(status).join('\n')).toContain(
      `webhook endpoint ${endpoint.id} (${receiver.url}) is failing: 0 deliveries retrying, 1 given up (last error: HTTP 500: receiver exploded)`,
    );

    healthy = true;
    expect(await retryGivenUp({ db: serviceClient(), endpointId: endpoint.id })).toEqual({
      ok: true,
      value: 1,
    });
    expect(await succeeded(drainWebhooks(deliveryInput([endpoint.id])))).toMatchObject({
      delivered: 1,
    });
    const healed = operatorStatusSchema.parse((await serviceClient().rpc('operator_status')).data);
    expect(healed.webhook_deliveries.failing_endpoints.map((e) => e.id)).not.toContain(endpoint.id);
    const ids = new Set(receiver.requests.map((r) => r.id));
    expect(ids.size).toBe(1);
    expect(new Set(receiver.requests.map((r) => r.body)).size).toBe(1);
  });

  it('a delivery nobody attempts for over two of the sender’s minutes is named in status until it is sent', async () => {
    const receiver = fakeReceiver(server);
    const endpoint = await receiverEndpoint(receiver);
    const tenant = await createTenant();
    const event = await recordWebhookEvent({
      db: serviceClient(),
      type: 'collection.gap_recorded',
      idempotencyKey: `test:unattempted:${endpoint.id}`,
      tenantId: tenant.id,
      endpointIds: [endpoint.id],
      payload: { note: 'waiting' },
    });
    if (!event.ok) throw new Error(event.error.message);
    const statusOf = () => operatorStatusOf([tenant.id]);
    const fresh = await statusOf();
    expect(fresh.webhook_deliveries).toMatchObject({ unattempted: 1 });
    expect(needsAttention({ ...fresh, scheduled_functions: [] })).toEqual([]);

    // As if every deliver-webhooks run since had deferred it.
    await superuser().query(
      "update public.webhook_deliveries set created_at = now() - interval '20 minutes' where endpoint_id = $1",
      [endpoint.id],
    );
    const waiting = await statusOf();
    expect(needsAttention({ ...waiting, scheduled_functions: [] })).toEqual([
      expect.stringMatching(
        /^1 webhook delivery never attempted, the oldest waiting 20 minutes: deliver-webhooks is not sending them/,
      ),
    ]);

    await setEndpointEnabled({ db: serviceClient(), endpointId: endpoint.id, enabled: false });
    const disabled = await statusOf();
    expect(disabled.webhook_deliveries).toMatchObject({ unattempted: 0 });
    await setEndpointEnabled({ db: serviceClient(), endpointId: endpoint.id, enabled: true });

    expect(await deliver(deliveryInput([endpoint.id]))).toMatchObject({ delivered: 1 });
    const sent = await statusOf();
    expect(sent.webhook_deliveries).toMatchObject({ unattempted: 0, oldest_unattempted_at: null });
    expect(needsAttention({ ...sent, scheduled_functions: [] })).toEqual([]);
  });

  it('a claim that never reaches the database is the run’s unavailable failure; nothing is sent', async () => {
    const receiver = fakeReceiver(server);
    const endpoint = await receiverEndpoint(receiver);
    await sendTestEvent({ db: serviceClient(), endpointId: endpoint.id });
    const db = faultyDb(
      rpcFetch((call, send) =>
        call.fn === 'claim_webhook_deliveries' ? dropRequest(call) : send(),
      ),
    );
    expect(await drainWebhooks(deliveryInput([endpoint.id], { db }))).toMatchObject({
      ok: false,
      error: {
        code: 'unavailable',
        message: expect.stringMatching(/^claim_webhook_deliveries failed: .*fetch failed/),
      },
    });
    expect(receiver.requests).toEqual([]);
    expect(await deliveriesOf([endpoint.id])).toEqual([
      expect.objectContaining({ status: 'pending', attempts: 0 }),
    ]);
  });

  it('a sender that vanished mid-send: its 8th attempt never reported, the delivery is given up', async () => {
    const receiver = fakeReceiver(server);
    const endpoint = await receiverEndpoint(receiver);
    await sendTestEvent({ db: serviceClient(), endpointId: endpoint.id });
    await superuser().query(
      `update public.webhook_deliveries set status = 'sending', attempts = 8,
         lease_expires_at = now() - interval '1 second' where endpoint_id = $1`,
      [endpoint.id],
    );
    expect(await deliver(deliveryInput([endpoint.id]))).toMatchObject({ claimed: 0 });
    const [row] = await deliveriesOf([endpoint.id]);
    expect(row).toMatchObject({ status: 'failed', next_attempt_at: null });
    expect(row?.last_error).toMatch(/never reported an outcome/);
  });

  it('does not follow a redirect: the signed body goes only where the operator registered', async () => {
    const receiver = fakeReceiver(server);
    const endpoint = await receiverEndpoint(receiver);
    const elsewhere: string[] = [];
    server.use(
      http.post(receiver.url, () =>
        HttpResponse.text('', {
          status: 307,
          headers: { location: 'https://elsewhere.example.test/steal' },
        }),
      ),
      http.post('https://elsewhere.example.test/steal', ({ request }) => {
        elsewhere.push(request.url);
        return new HttpResponse(null, { status: 204 });
      }),
    );
    await sendTestEvent({ db: serviceClient(), endpointId: endpoint.id });
    expect(await deliver(deliveryInput([endpoint.id]))).toMatchObject({ failed: 1 });
    const [row] = await deliveriesOf([endpoint.id]);
    expect(row).toMatchObject({ status: 'failed', last_status: 307 });
    expect(row?.last_error).toMatch(/redirects are not followed/);
    expect(elsewhere).toEqual([]);
  });

  it('a disabled endpoint gets no deliveries for new events, and its due ones wait until it is enabled', async () => {
    const receiver = fakeReceiver(server);
    const endpoint = await receiverEndpoint(receiver);
    const [waiting] = await recordEvents([endpoint.id], 1, `disabled-${endpoint.id}`);
    await setEndpointEnabled({ db: serviceClient(), endpointId: endpoint.id, enabled: false });
    await recordEvents([endpoint.id], 1, `while-disabled-${endpoint.id}`);
    expect(await deliver(deliveryInput([endpoint.id]))).toMatchObject({ claimed: 0 });

    await setEndpointEnabled({ db: serviceClient(), endpointId: endpoint.id, enabled: true });
    expect(await deliver(deliveryInput([endpoint.id]))).toMatchObject({ delivered: 1 });
    expect(receiver.requests.map((r) => r.id)).toEqual([waiting]);
  });

  it('an endpoint whose secrets all expired fails visibly instead of sending unsigned', async () => {
    const { receiver, endpoint } = await testEventAfter(
      "update public.webhook_endpoint_secrets set expires_at = now() - interval '1 second' where endpoint_id = $1",
    );
    expect(await deliver(deliveryInput([endpoint.id]))).toMatchObject({ failed: 1 });
    expect(receiver.requests).toEqual([]);
    const [row] = await deliveriesOf([endpoint.id]);
    expect(row?.last_error).toMatch(/no valid secret/);
  });

  it('production mode: a host whose DNS now answers a private address gets nothing, and the attempt says why', async () => {
    let answer = '93.184.216.34';
    const resolve = async () => [answer];
    const added = await addEndpoint({
      db: serviceClient(),
      keyring: webhookKeyring,
      mode: 'production',
      resolve,
      url: 'https://hooks.rebinding.example.com/flowmeter',
      eventTypes: ['webhook.test'],
    });
    if (!added.ok) throw new Error(added.error.message);
    const endpoint = added.value.endpoint;
    await sendTestEvent({ db: serviceClient(), endpointId: endpoint.id });

    answer = '10.0.0.7';
    const summary = await deliver(
      deliveryInput([endpoint.id], { mode: 'production', fetch: publicOnlyFetch(resolve) }),
    );
    expect(summary).toMatchObject({ claimed: 1, failed: 1 });
    const [row] = await deliveriesOf([endpoint.id]);
    expect(row).toMatchObject({ status: 'failed', last_status: null });
    expect(row?.last_error).toMatch(
      /refused: the endpoint URL names hooks\.rebinding\.example\.com, which resolves to 10\.0\.0\.7, a private address/,
    );
  });

  it('production mode refuses at send a URL that only local mode admits', async () => {
    const { endpoint } = await testEventAfter(
      "update public.webhook_endpoints set url = 'http://127.0.0.1:9/hook' where id = $1",
    );
    await deliver(deliveryInput([endpoint.id], { mode: 'production' }));
    const [row] = await deliveriesOf([endpoint.id]);
    expect(row?.last_error).toMatch(/refused: the endpoint URL must start with https/);
  });
});
