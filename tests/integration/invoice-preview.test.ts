import { randomBytes } from 'node:crypto';
import { delay, http } from 'msw';
import { describe, expect, it } from 'vitest';
import {
  createInvoicePreviewHandler,
  invoicePreviewResponseSchema,
} from '../../src/billing/invoice-preview-handler.ts';
import { runReconciliation } from '../../src/billing/reconcile.ts';
import { refreshInvoicePreviews } from '../../src/billing/refresh-invoice-previews.ts';
import { EXIT } from '../../src/cli/main.ts';
import { createUserClient } from '../../src/db/client.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { stripeClient, TEST_STRIPE_KEY } from '../support/billing.ts';
import { runCliWith } from '../support/cli.ts';
import type { FakeSubscription } from '../support/fake-stripe.ts';
import { dropRequest, faultyDb, rpcFetch } from '../support/faults.ts';
import { createTenant, createUser, ingestExecutions, memberOf } from '../support/fixtures.ts';
import { reporterRun, useFakeStripe } from '../support/reporter-runs.ts';
import { succeeded } from '../support/result.ts';
import {
  anonClient,
  serviceClient,
  stack,
  superuser,
  uniqueId,
  userAccessToken,
} from '../support/stack.ts';

/**
 * Stripe's upcoming-invoice preview beside flowmeter's estimate, against the test Stripe
 * (POST /v1/invoices/create_preview as Stripe documents it): cached per tenant and period,
 * refreshed only when older than its lifetime, read by tenant members under row-level
 * security, refreshed for them by the dashboards' endpoint, and compared by reconciliation.
 */
const { server, stripe } = useFakeStripe();

const hex = () => randomBytes(6).toString('hex');
const monthBounds = () => {
  const now = new Date();
  const start = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
  const end = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
  return { start, end };
};

/** 100 executions included, then 0.5 cents each, as the flowmeter plan and its Stripe price say. */
const tiers = (included = 100) => [
  { upTo: included, unitAmountDecimal: '0' },
  { upTo: null, unitAmountDecimal: '0.5' },
];

async function subscribedTenant(
  options: { stripeIncluded?: number; status?: FakeSubscription['status'] } = {},
) {
  const planId = uniqueId('plan');
  const { error } = await serviceClient().rpc('set_plan', {
    id: planId,
    name: 'Metered',
    included_executions: 100,
    limit_policy: 'overage',
    overage_unit_amount: 0.5,
    currency: 'eur',
    stripe_meter_event_name: 'n8n_executions',
    stripe_meter_id: 'mtr_test_preview',
  });
  if (error) throw new Error(`set_plan: ${error.message}`);
  const tenant = await createTenant(planId);
  const customer = `cus_${hex()}`;
  const subscription = `sub_${hex()}`;
  await superuser().query(
    `update public.tenants set stripe_customer_id = $2, stripe_subscription_id = $3,
       subscription_status = 'active' where id = $1`,
    [tenant.id, customer, subscription],
  );
  const { start, end } = monthBounds();
  stripe.addSubscription({
    id: subscription,
    customer,
    status: options.status ?? 'active',
    currency: 'eur',
    periodStart: start / 1000,
    periodEnd: end / 1000,
    prices: [
      { id: `price_flat_${hex()}`, type: 'licensed', unitAmount: 2900 },
      {
        id: `price_metered_${hex()}`,
        type: 'metered',
        meter: 'mtr_test_preview',
        tiers: tiers(options.stripeIncluded),
      },
    ],
  });
  return { tenantId: tenant.id, customer, subscription };
}

/** Executions collected (a second ago), so counters equal raw rows. */
const collected = (tenantId: string, executions: number) =>
  ingestExecutions(
    tenantId,
    Array.from({ length: executions }, (_, i) => ({
      workflow: 'orders',
      startedAt: Date.now() - 1000 - i,
    })),
  );

const report = reporterRun({});

/** Usage collected and reported to the test Stripe, as the hourly reporter does. */
async function reported(tenantId: string, executions: number) {
  await collected(tenantId, executions);
  await report([tenantId]);
}

const refresh = (tenantId: string, maxAgeSeconds = 300) =>
  succeeded(
    refreshInvoicePreviews({
      db: serviceClient(),
      stripe: stripeClient(5000),
      log: silentLogger,
      tenantIds: [tenantId],
      maxAgeSeconds,
    }),
  );

async function cached(tenantId: string) {
  const { rows } = await superuser().query(
    `select status, currency, total::int, amount_due::int, subtotal::int, usage_quantity::int,
            usage_amount::int, fetched_at
     from public.invoice_previews where tenant_id = $1`,
    [tenantId],
  );
  return rows;
}

const requestsFor = (subscription: string) =>
  stripe.previewRequests.filter((form) => form.get('subscription') === subscription);

/** Stripe takes a while over the next preview, so refreshes started with it overlap it. */
const slowNextPreview = () =>
  server.use(
    http.post(
      `${stripe.base}/v1/invoices/create_preview`,
      async () => {
        await delay(300);
      },
      { once: true },
    ),
  );

/** The tenant's cached preview an hour old, past the cache's lifetime. */
const ageCache = (tenantId: string) =>
  superuser().query(
    "update public.invoice_previews set fetched_at = now() - interval '1 hour' where tenant_id = $1",
    [tenantId],
  );

/** The preview of `executions` reported executions cached, then aged past the cache's lifetime. */
async function agedPreview(tenantId: string, executions: number) {
  await reported(tenantId, executions);
  await refresh(tenantId);
  await ageCache(tenantId);
}

/** A claim on the tenant's current period, as a refresh that died before recording leaves it. */
async function abandonedClaim(tenantId: string) {
  const period = new Date(monthBounds().start).toISOString();
  const { data, error } = await serviceClient().rpc('claim_invoice_preview_refresh', {
    tenant_id: tenantId,
    period_start: period,
    max_age_seconds: 0,
  });
  expect(error).toBeNull();
  expect(data).not.toBeNull();
}

/** Lets the tenant's claim run out, as time would. */
const expireClaim = (tenantId: string) =>
  superuser().query(
    "update public.invoice_preview_claims set claimed_until = now() - interval '1 second' where tenant_id = $1",
    [tenantId],
  );

describe('the invoice preview cache', () => {
  it("caches Stripe's preview per tenant and period, asking Stripe again only when it is old", async () => {
    const t = await subscribedTenant();
    await reported(t.tenantId, 150);

    expect(await refresh(t.tenantId)).toMatchObject({ refreshed: 1, failed: [] });
    expect(await cached(t.tenantId)).toMatchObject([
      {
        status: 'ok',
        currency: 'eur',
        // the flat fee, and 50 executions over the 100 included at half a cent
        total: 2925,
        amount_due: 2925,
        subtotal: 2925,
        usage_quantity: 150,
        usage_amount: 25,
      },
    ]);
    const [request] = requestsFor(t.subscription);
    expect(Object.fromEntries(request ?? [])).toEqual({
      customer: t.customer,
      subscription: t.subscription,
      'expand[0]': 'lines.data.pricing.price_details.price',
    });

    expect(await refresh(t.tenantId)).toMatchObject({ refreshed: 0 });
    expect(requestsFor(t.subscription)).toHaveLength(1);
    await reported(t.tenantId, 10);
    expect(await refresh(t.tenantId, 0)).toMatchObject({ refreshed: 1 });
    expect(requestsFor(t.subscription)).toHaveLength(2);
    expect(await cached(t.tenantId)).toMatchObject([{ usage_quantity: 160, usage_amount: 30 }]);
    expect(stripe.refusals.filter((r) => r.code !== 'invoice_upcoming_none')).toEqual([]);
  });

  it('records that Stripe has no upcoming invoice, without amounts', async () => {
    const t = await subscribedTenant({ status: 'canceled' });
    expect(await refresh(t.tenantId)).toMatchObject({ refreshed: 0, none: 1, failed: [] });
    expect(await cached(t.tenantId)).toMatchObject([
      { status: 'none', total: null, usage_amount: null },
    ]);
  });

  it('keeps the cached preview when Stripe fails, and says so', async () => {
    const t = await subscribedTenant();
    await reported(t.tenantId, 120);
    await refresh(t.tenantId);
    const before = await cached(t.tenantId);
    stripe.failPreviewNext('server_error');
    const summary = await refresh(t.tenantId, 0);
    expect(summary.refreshed).toBe(0);
    expect(summary.failed).toEqual([
      {
        tenantId: t.tenantId,
        message: expect.stringMatching(/^Stripe did not preview the invoice/),
      },
    ]);
    expect(await cached(t.tenantId)).toEqual(before);
  });

  it('asks Stripe once when two refreshes of a tenant start together', async () => {
    const t = await subscribedTenant();
    await reported(t.tenantId, 130);
    slowNextPreview();
    const summaries = await Promise.all([refresh(t.tenantId, 0), refresh(t.tenantId, 0)]);
    expect(requestsFor(t.subscription)).toHaveLength(1);
    expect(summaries.map((s) => [s.refreshed, s.inProgress]).sort()).toEqual([
      [0, 1],
      [1, 0],
    ]);
    expect(await cached(t.tenantId)).toMatchObject([{ usage_quantity: 130 }]);
    // The claim ends with the refresh: the next one asks Stripe again.
    expect(await refresh(t.tenantId, 0)).toMatchObject({ refreshed: 1, inProgress: 0 });
    expect(requestsFor(t.subscription)).toHaveLength(2);
  });

  it('asks Stripe again once the claim of a refresh that died has expired', async () => {
    const t = await subscribedTenant();
    await abandonedClaim(t.tenantId);
    expect(await refresh(t.tenantId, 0)).toMatchObject({ refreshed: 0, inProgress: 1 });
    expect(requestsFor(t.subscription)).toHaveLength(0);
    await expireClaim(t.tenantId);
    expect(await refresh(t.tenantId, 0)).toMatchObject({ refreshed: 1, inProgress: 0 });
    expect(requestsFor(t.subscription)).toHaveLength(1);
    expect(await cached(t.tenantId)).toMatchObject([{ status: 'ok' }]);
  });

  it('keeps the claim a later refresh took when one whose claim expired releases it late', async () => {
    const t = await subscribedTenant();
    const key = {
      tenant_id: t.tenantId,
      period_start: new Date(monthBounds().start).toISOString(),
    };
    const claim = () =>
      serviceClient().rpc('claim_invoice_preview_refresh', { ...key, max_age_seconds: 0 });
    const late = await claim();
    expect(late).toMatchObject({ error: null, data: expect.any(String) });
    await superuser().query(
      "update public.invoice_preview_claims set claimed_until = now() - interval '1 second' where tenant_id = $1",
      [t.tenantId],
    );
    expect(await claim()).toMatchObject({ error: null, data: expect.any(String) });
    const release = await serviceClient().rpc('release_invoice_preview_claim', {
      ...key,
      claimed_until: String(late.data),
    });
    expect(release.error).toBeNull();
    expect(await claim()).toMatchObject({ error: null, data: null });
  });

  it('releases the claim when Stripe fails, so the next refresh asks again', async () => {
    const t = await subscribedTenant();
    stripe.failPreviewNext('server_error');
    expect((await refresh(t.tenantId, 0)).failed).toHaveLength(1);
    expect(await refresh(t.tenantId, 0)).toMatchObject({ refreshed: 1, inProgress: 0 });
    expect(requestsFor(t.subscription)).toHaveLength(2);
  });

  it('keeps a preview whose claim release was lost; the claim holds only until it expires', async () => {
    const t = await subscribedTenant();
    await reported(t.tenantId, 140);
    const lostRelease = faultyDb(
      rpcFetch((call, send) =>
        call.fn === 'release_invoice_preview_claim' ? dropRequest(call) : send(),
      ),
    );
    const summary = await succeeded(
      refreshInvoicePreviews({
        db: lostRelease,
        stripe: stripeClient(5000),
        log: silentLogger,
        tenantIds: [t.tenantId],
        maxAgeSeconds: 0,
      }),
    );
    expect(summary).toMatchObject({ refreshed: 1, inProgress: 0, failed: [] });
    expect(await cached(t.tenantId)).toMatchObject([{ status: 'ok', usage_quantity: 140 }]);
    expect(await refresh(t.tenantId, 0)).toMatchObject({ refreshed: 0, inProgress: 1 });
    expect(requestsFor(t.subscription)).toHaveLength(1);
    await expireClaim(t.tenantId);
    expect(await refresh(t.tenantId, 0)).toMatchObject({ refreshed: 1, inProgress: 0 });
    expect(requestsFor(t.subscription)).toHaveLength(2);
  });

  it('asks nothing of Stripe for a tenant without a subscription', async () => {
    const tenant = await createTenant();
    const requests = stripe.previewRequests.length;
    expect(await refresh(tenant.id, 0)).toMatchObject({ refreshed: 0, none: 0, failed: [] });
    expect(stripe.previewRequests).toHaveLength(requests);
  });
});

describe('the tenant RPC tenant_invoice_preview', () => {
  it("shows a member their tenant's preview and nothing of another tenant's", async () => {
    const mine = await subscribedTenant();
    const theirs = await subscribedTenant();
    await reported(mine.tenantId, 130);
    await reported(theirs.tenantId, 170);
    await refresh(mine.tenantId);
    await refresh(theirs.tenantId);
    const { db: client } = await memberOf(mine.tenantId);

    const all = await client.rpc('tenant_invoice_preview');
    expect(all.error).toBeNull();
    expect(all.data).toMatchObject([
      { tenant_id: mine.tenantId, status: 'ok', usage_quantity: 130, usage_amount: 15 },
    ]);
    const other = await client.rpc('tenant_invoice_preview', { tenant_id: theirs.tenantId });
    expect(other).toMatchObject({ error: null, data: [] });
    const table = await client.rpc('tenant_usage_summary', { tenant_id: theirs.tenantId });
    expect(table.data).toEqual([]);
  });

  it('answers 401 without a user JWT', async () => {
    const { status, error } = await anonClient().rpc('tenant_invoice_preview');
    expect(status).toBe(401);
    expect(error?.code).toBe('42501');
  });
});

describe('POST /api/v1/invoice-preview (the dashboards refresh it with the user JWT)', () => {
  const handler = createInvoicePreviewHandler({
    db: serviceClient(),
    userDb: (token) =>
      createUserClient(
        { SUPABASE_URL: stack.supabaseUrl, SUPABASE_ANON_KEY: stack.anonKey },
        token,
      ),
    stripe: stripeClient(5000),
    log: silentLogger,
    ttlSeconds: 300,
  });
  /** A new member of the tenant, as the bearer token the dashboards send. */
  const memberToken = async (tenantId: string) =>
    userAccessToken((await memberOf(tenantId)).userId);
  const post = (body: unknown, token?: string, contentType = 'application/json') =>
    handler(
      new Request('http://localhost/api/v1/invoice-preview', {
        method: 'POST',
        headers: {
          'content-type': contentType,
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      }),
    );

  it("refreshes and answers a member's tenant preview, within the cache's lifetime once", async () => {
    const t = await subscribedTenant();
    await reported(t.tenantId, 140);
    const token = await memberToken(t.tenantId);

    const response = await post({ tenant_id: t.tenantId }, token);
    expect(response.status).toBe(200);
    const body = await response.json();
    // the shape the OpenAPI document gives
    expect(invoicePreviewResponseSchema.safeParse(body).success).toBe(true);
    expect(body).toMatchObject({
      preview: { tenant_id: t.tenantId, status: 'ok', usage_quantity: 140, usage_amount: 20 },
      refresh_error: null,
    });
    expect((await post({ tenant_id: t.tenantId }, token)).status).toBe(200);
    expect(requestsFor(t.subscription)).toHaveLength(1);
  });

  it('asks Stripe once for POSTs and a scheduled refresh at the same moment, each answering the preview', async () => {
    const t = await subscribedTenant();
    await agedPreview(t.tenantId, 120);
    await reported(t.tenantId, 10);
    const token = await memberToken(t.tenantId);
    slowNextPreview();
    const [first, second] = await Promise.all([
      post({ tenant_id: t.tenantId }, token),
      post({ tenant_id: t.tenantId }, token),
      refresh(t.tenantId),
    ]);
    expect(requestsFor(t.subscription)).toHaveLength(2);
    for (const response of [first, second]) {
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({
        preview: { usage_quantity: expect.any(Number) },
        refresh_error: null,
      });
    }
    expect(await cached(t.tenantId)).toMatchObject([{ usage_quantity: 130 }]);
  });

  it("answers 404 for another tenant's id, as for one that does not exist, and asks Stripe nothing", async () => {
    const t = await subscribedTenant();
    const user = await createUser();
    const token = await userAccessToken(user);
    const response = await post({ tenant_id: t.tenantId }, token);
    expect(response.status).toBe(404);
    const unknown = await post({ tenant_id: '00000000-0000-4000-8000-000000000000' }, token);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual(await response.json());
    expect(requestsFor(t.subscription)).toHaveLength(0);
    expect(await cached(t.tenantId)).toEqual([]);
  });

  it('refuses a missing or forged token, a bad body and other methods, changing nothing', async () => {
    const t = await subscribedTenant();
    const forged = await userAccessToken(await createUser());
    expect((await post({ tenant_id: t.tenantId })).status).toBe(401);
    expect((await post({ tenant_id: t.tenantId }, `${forged.slice(0, -4)}AAAA`)).status).toBe(401);
    expect((await post({ tenant_id: 'acme' }, forged)).status).toBe(400);
    expect((await post({ tenant_id: t.tenantId, extra: 1 }, forged)).status).toBe(400);
    expect((await post('{', forged)).status).toBe(400);
    expect((await post({ tenant_id: t.tenantId }, forged, 'text/plain')).status).toBe(415);
    const get = await handler(new Request('http://localhost/api/v1/invoice-preview'));
    expect(get.status).toBe(405);
    expect(requestsFor(t.subscription)).toHaveLength(0);
  });

  it('says when Stripe could not be asked, and answers the cached preview', async () => {
    const t = await subscribedTenant();
    await agedPreview(t.tenantId, 110);
    const token = await memberToken(t.tenantId);
    stripe.failPreviewNext('server_error');
    const response = await post({ tenant_id: t.tenantId }, token);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      preview: { usage_quantity: 110 },
      refresh_error: expect.stringMatching(/^Stripe did not preview the invoice/),
    });
  });
});

describe('reconciliation of the preview with flowmeter’s estimate', () => {
  const reconcile = (tenantId: string) =>
    succeeded(
      runReconciliation({
        db: serviceClient(),
        stripe: stripeClient(5000),
        log: silentLogger,
        since: new Date(monthBounds().start),
        tenantIds: [tenantId],
        settleMs: 0,
      }),
    );

  it('finds nothing when Stripe bills what flowmeter estimates', async () => {
    const t = await subscribedTenant();
    await reported(t.tenantId, 151);
    const summary = await reconcile(t.tenantId);
    expect(summary).toMatchObject({ previewChecked: 1, previewFindings: [] });
  });

  it("records a finding, shown in status, when Stripe's price bills the usage differently", async () => {
    // Stripe's price includes 50 executions where the flowmeter plan includes 100.
    const t = await subscribedTenant({ stripeIncluded: 50 });
    await reported(t.tenantId, 150);
    const summary = await reconcile(t.tenantId);
    expect(summary.counterFindings).toEqual([]);
    expect(summary.previewFindings).toMatchObject([
      { kind: 'invoice_preview_drift', tenant_id: t.tenantId, expected: 25, actual: 50 },
    ]);
    expect(summary.previewFindings[0]?.detail).toBe(
      `Stripe's upcoming invoice for ${t.subscription} bills 150 executions for 50 eur; flowmeter reported 150 and estimates 25 eur for them`,
    );
    const { data } = await serviceClient().rpc('operator_status', { tenant_ids: [t.tenantId] });
    expect(data).toMatchObject({
      reconciliation: { unrepaired: 1, last_kind: 'invoice_preview_drift' },
    });
    const status = await runCliWith(['status', '--tenant', t.tenantId]);
    expect(status.out).toMatch(
      /Reconciliation findings not repaired \(last 30 days\): 1 \(latest invoice_preview_drift at /,
    );
    expect(status.out + status.err).toMatch(/1 reconciliation finding in the last 30 days/);
  });

  it('counts a preview Stripe failed as failed, not as skipped, with its message', async () => {
    const t = await subscribedTenant();
    await reported(t.tenantId, 120);
    stripe.failPreviewNext('server_error');
    const failed = await reconcile(t.tenantId);
    expect(failed).toMatchObject({ previewChecked: 0, previewSkipped: 0, previewFailed: 1 });
    expect(failed.previewError).toMatch(
      new RegExp(`^tenant ${t.tenantId}: Stripe did not preview the invoice: `),
    );
    expect(await reconcile(t.tenantId)).toMatchObject({
      previewChecked: 1,
      previewFailed: 0,
      previewError: null,
    });
  });

  it('does not compare while reports are pending, since Stripe cannot agree yet', async () => {
    const t = await subscribedTenant({ stripeIncluded: 50 });
    await reported(t.tenantId, 150);
    await collected(t.tenantId, 5);
    await serviceClient().rpc('claim_meter_deltas', { tenant_ids: [t.tenantId] });
    const summary = await reconcile(t.tenantId);
    expect(summary).toMatchObject({ previewChecked: 0, previewFindings: [] });
  });
});

describe('flowmeter tenants usage', () => {
  it("shows Stripe's upcoming invoice beside flowmeter's estimate", async () => {
    const t = await subscribedTenant();
    await reported(t.tenantId, 180);
    const env = { STRIPE_SECRET_KEY: TEST_STRIPE_KEY };
    const table = await runCliWith(['tenants', 'usage', t.tenantId], { env });
    expect(table.code).toBe(EXIT.ok);
    expect(table.out).toMatch(/│ estimated overage \(flowmeter\)\s+│ €0\.40/);
    expect(table.out).toMatch(
      /│ upcoming invoice \(Stripe\)\s+│ €29\.40 total; usage: 180 executions for €0\.40 \(fetched /,
    );
    const json = await runCliWith(['tenants', 'usage', t.tenantId, '--json'], { env });
    expect(JSON.parse(json.out)).toMatchObject({
      estimated_overage_amount: 40,
      currency: 'eur',
      invoice_preview: { status: 'ok', total: 2940, usage_amount: 40 },
      invoice_preview_error: null,
    });
    expect(requestsFor(t.subscription)).toHaveLength(1);
  });

  it('says why there is no preview without a Stripe key', async () => {
    const t = await subscribedTenant();
    const table = await runCliWith(['tenants', 'usage', t.tenantId], {
      env: { STRIPE_SECRET_KEY: '' },
    });
    expect(table.out).toMatch(
      /│ upcoming invoice \(Stripe\)\s+│ not fetched: STRIPE_SECRET_KEY is not set/,
    );
    expect(requestsFor(t.subscription)).toHaveLength(0);
  });
});
