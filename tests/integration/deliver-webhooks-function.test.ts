import { describe, expect, it, vi } from 'vitest';
import deliverWebhooksFunction from '../../netlify/functions/deliver-webhooks.mts';
import { addEndpoint } from '../../src/webhooks/add-endpoint.ts';
import { sendTestEvent } from '../../src/webhooks/send-test-event.ts';
import { useN8nServer } from '../support/collector.ts';
import { useTimedOutDatabase } from '../support/faults.ts';
import { useOwnStack } from '../support/own-stack.ts';
import { fakeReceiver, webhookKeyring } from '../support/webhooks.ts';

/**
 * The scheduled function as Netlify runs it: only its environment, every due delivery of the
 * database. On a stack of its own, so that it cannot send another test file's deliveries.
 */
const server = useN8nServer();
const own = useOwnStack();
const timedOut = useTimedOutDatabase();

/** The environment Netlify gives the function, its database at `supabaseUrl`. */
function stubFunctionEnv(supabaseUrl: string) {
  vi.stubEnv('SUPABASE_URL', supabaseUrl);
  vi.stubEnv('SUPABASE_SERVICE_ROLE_KEY', own.stack.serviceRoleKey);
  vi.stubEnv(
    'FLOWMETER_ENCRYPTION_KEYS',
    `k1:${webhookKeyring.keys.get('k1')?.toString('base64')}`,
  );
  vi.stubEnv('WEBHOOK_MODE', 'local');
  vi.stubEnv('LOG_LEVEL', 'error');
}

describe('deliver-webhooks (the scheduled function)', () => {
  it('delivers a due webhook from its own environment and records the run', async () => {
    stubFunctionEnv(own.stack.supabaseUrl);
    try {
      const receiver = fakeReceiver(server);
      const added = await addEndpoint({
        db: own.db,
        keyring: webhookKeyring,
        mode: 'local',
        resolve: async () => ['127.0.0.1'],
        url: receiver.url,
        eventTypes: ['webhook.test'],
      });
      if (!added.ok) throw new Error(added.error.message);
      receiver.secrets.push(added.value.secret);
      const endpoint = added.value.endpoint;
      const event = await sendTestEvent({ db: own.db, endpointId: endpoint.id });
      if (!event.ok) throw new Error(event.error.message);
      const before = (await own.pool.query('select now() as at')).rows[0].at;

      const response = await deliverWebhooksFunction();

      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ delivered: expect.any(Number) });
      expect(receiver.requests.map((r) => [r.id, r.verifiedWith])).toEqual([[event.value.id, [0]]]);
      const { rows: deliveries } = await own.pool.query(
        'select status, attempts, last_status from public.webhook_deliveries where endpoint_id = $1',
        [endpoint.id],
      );
      expect(deliveries).toEqual([{ status: 'delivered', attempts: 1, last_status: 204 }]);
      const { rows } = await own.pool.query(
        `select ok, summary, error, finished_at is not null as finished from public.scheduled_runs
         where function_name = 'deliver-webhooks' and started_at >= $1`,
        [before],
      );
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ ok: true, finished: true, error: null });
      expect(rows[0].summary.delivered).toBeGreaterThanOrEqual(1);
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('answers 503 with the claim’s failure when the database times out on it', async () => {
    stubFunctionEnv(timedOut.url());
    try {
      const response = await deliverWebhooksFunction();
      expect(response.status).toBe(503);
      expect(await response.json()).toEqual({
        error: {
          code: 'unavailable',
          message:
            'claim_webhook_deliveries failed: Timed out acquiring connection from connection pool.',
          details: expect.objectContaining({ status: 504 }),
        },
      });
    } finally {
      vi.unstubAllEnvs();
    }
  });
});
