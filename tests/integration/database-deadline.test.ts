import { randomBytes, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import deliverAlertsFunction from '../../netlify/functions/deliver-alerts.mts';
import deliverWebhooksFunction from '../../netlify/functions/deliver-webhooks.mts';
import invoicePreviewFunction from '../../netlify/functions/invoice-preview.mts';
import reconcileUsageFunction from '../../netlify/functions/reconcile-usage.mts';
import reportUsageFunction from '../../netlify/functions/report-usage.mts';
import statusFunction from '../../netlify/functions/status.mts';
import stripeWebhookFunction from '../../netlify/functions/stripe-webhook.mts';
import { useHungRpcs } from '../support/faults.ts';
import { useOwnStack } from '../support/own-stack.ts';
import { delivery, nowSeconds, stripeId, subscriptionEvent } from '../support/stripe-events.ts';

/**
 * Every server function as Netlify runs it, from its environment, against a database whose
 * one call it depends on never answers (a hung PostgREST, a lock that is never released):
 * the call is cut at DB_TIMEOUT_MS, a scheduled run records that it failed and why while it
 * still has time, and an endpoint answers instead of being stopped by the platform. Without
 * the deadline each of these waits until the test times out. On a stack of its own: the
 * failed runs it records would otherwise show in every other test file's health.
 */
const own = useOwnStack();
const database = useHungRpcs(() => own.stack.supabaseUrl);
const operatorSecret = randomBytes(32).toString('hex');
const webhookSecret = `whsec_${randomBytes(24).toString('hex')}`;

beforeEach(() => {
  vi.stubEnv('SUPABASE_URL', database.url());
  vi.stubEnv('SUPABASE_SERVICE_ROLE_KEY', own.stack.serviceRoleKey);
  vi.stubEnv('SUPABASE_ANON_KEY', own.stack.anonKey);
  vi.stubEnv('FLOWMETER_ENCRYPTION_KEYS', `k1:${randomBytes(32).toString('base64')}`);
  vi.stubEnv('OPERATOR_SECRETS', operatorSecret);
  vi.stubEnv('STRIPE_WEBHOOK_SECRET', webhookSecret);
  vi.stubEnv('WEBHOOK_MODE', 'local');
  vi.stubEnv('LOG_LEVEL', 'error');
  vi.stubEnv('DB_TIMEOUT_MS', '500');
});
afterEach(() => {
  vi.unstubAllEnvs();
  database.hang.clear();
});

/** The scheduled_runs row of the run the function just started. */
async function lastRecordedRun() {
  const ids = database.answered('start_scheduled_run');
  const id = ids[ids.length - 1];
  expect(id).toEqual(expect.any(String));
  const { rows } = await own.pool.query(
    'select function_name, ok, error, finished_at is not null as finished from public.scheduled_runs where id = $1',
    [id],
  );
  return rows[0];
}

const errorOf = async (response: Response) =>
  ((await response.json()) as { error: { code: string; message: string } }).error;

describe('a scheduled function whose work hangs on the database', () => {
  it.each([
    ['report-usage', reportUsageFunction, 'claim_meter_deltas'],
    ['deliver-alerts', deliverAlertsFunction, 'claim_alert_deliveries'],
    ['deliver-webhooks', deliverWebhooksFunction, 'claim_webhook_deliveries'],
  ])('%s cuts the call at DB_TIMEOUT_MS and records the run as failed', async (name, run, fn) => {
    database.hang.add(fn);

    const response = await run();

    expect(response.status).toBe(503);
    const error = await errorOf(response);
    expect(error.code).toBe('unavailable');
    expect(error.message).toContain('no answer from the database within 500 ms');
    expect(await lastRecordedRun()).toEqual({
      function_name: name,
      ok: false,
      error: error.message,
      finished: true,
    });
  });

  it('reconcile-usage gives its long scan what the function has, less two deadlines, and records the cut', async () => {
    // 30 s less 2 × 10 s: the scan is cut at 10 s; the run is recorded with the usual deadline.
    vi.stubEnv('DB_TIMEOUT_MS', '10000');
    database.hang.add('reconcile_counters');

    const response = await reconcileUsageFunction();

    expect(response.status).toBe(503);
    const error = await errorOf(response);
    expect(error.message).toContain('no answer from the database within 10000 ms');
    expect(await lastRecordedRun()).toMatchObject({
      function_name: 'reconcile-usage',
      ok: false,
      finished: true,
    });
  });

  it('still ends when recording the run hangs too, saying so in its answer', async () => {
    database.hang.add('claim_alert_deliveries');
    database.hang.add('finish_scheduled_run');

    const response = await deliverAlertsFunction();

    expect(response.status).toBe(503);
    expect((await errorOf(response)).message).toContain('within 500 ms');
    // Unrecorded: health calls it killed once it has been unfinished for 2 minutes.
    expect(await lastRecordedRun()).toMatchObject({ ok: null, finished: false });
  });
});

describe('an endpoint whose database hangs', () => {
  it('GET /api/v1/status answers 503 "cannot answer" instead of hanging', async () => {
    database.hang.add('operator_status');
    const response = await statusFunction(
      new Request('https://flowmeter.test/api/v1/status', {
        headers: { authorization: `Bearer ${operatorSecret}` },
      }),
    );
    expect(response.status).toBe(503);
    expect(await errorOf(response)).toEqual({
      code: 'unavailable',
      message: 'The database cannot answer right now',
    });
  });

  it('POST /api/v1/invoice-preview answers 503 when the membership check hangs', async () => {
    database.hang.add('tenant_usage_summary');
    const response = await invoicePreviewFunction(
      new Request('https://flowmeter.test/api/v1/invoice-preview', {
        method: 'POST',
        headers: { authorization: 'Bearer a-user-token', 'content-type': 'application/json' },
        body: JSON.stringify({ tenant_id: randomUUID() }),
      }),
    );
    expect(response.status).toBe(503);
    expect((await errorOf(response)).code).toBe('unavailable');
  });

  it('the Stripe webhook answers 500, so Stripe sends the event again, when recording it hangs', async () => {
    database.hang.add('apply_stripe_subscription_event');
    const start = nowSeconds();
    const event = subscriptionEvent('customer.subscription.updated', {
      id: stripeId('sub'),
      customer: stripeId('cus'),
      items: [{ price: stripeId('price'), start, end: start + 30 * 86_400 }],
    });
    const response = await stripeWebhookFunction(
      delivery(JSON.stringify(event), { secret: webhookSecret }),
    );
    expect(response.status).toBe(500);
    expect((await errorOf(response)).message).toBe(
      `Stripe event ${event.id} could not be recorded`,
    );
  });
});
