import { describe, expect, it } from 'vitest';
import {
  type ReporterSettings,
  runReporter,
  UNANSWERED_AT_CUT,
} from '../../src/billing/report-usage.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import {
  addUsage,
  ledger,
  reporterTestSettings,
  meteredTenant as sharedMeteredTenant,
  stripeClient,
} from '../support/billing.ts';
import type { FakeStripe, StripeFault } from '../support/fake-stripe.ts';
import { mulberry32 as prng } from '../support/faults.ts';
import { useStripeServer } from '../support/reporter-runs.ts';
import { succeeded } from '../support/result.ts';
import { serviceClient, superuser } from '../support/stack.ts';

const { fakeStripe } = useStripeServer();

const settings = reporterTestSettings;

/** Tenants of this file: every run is scoped to them, never to other files' tenants. */
const ours: string[] = [];

async function meteredTenant(billable = 0) {
  const tenant = await sharedMeteredTenant(billable);
  ours.push(tenant.tenantId);
  return tenant;
}

const run = (
  stripe: ReturnType<typeof stripeClient> | null = stripeClient(),
  overrides: Partial<ReporterSettings> = {},
  tenantIds: string[] = [...ours],
) =>
  succeeded(
    runReporter({
      db: serviceClient(),
      stripe,
      settings: { ...settings, ...overrides },
      log: silentLogger,
      tenantIds,
    }),
  );

/** The tenant's one report was billed once: Stripe holds its value once, the ledger says sent. */
async function expectBilledOnce(
  stripe: FakeStripe,
  tenantId: string,
  customer: string,
  value: number,
) {
  expect(stripe.totalFor(customer)).toBe(value);
  expect((await ledger(tenantId))[0].status).toBe('sent');
  expect(stripe.conflicts).toEqual([]);
}

describe('reporter', () => {
  it('records the delta in the ledger, then sends it once with a deterministic identifier', async () => {
    const stripe = fakeStripe();
    const { tenantId, customer } = await meteredTenant(7);
    const summary = await run();
    expect(summary.sent).toBeGreaterThanOrEqual(1);
    expect(stripe.totalFor(customer)).toBe(7);
    const [row] = await ledger(tenantId);
    expect(row).toMatchObject({ value: 7, status: 'sent', reported_through: 7 });
    expect(row.identifier).toMatch(new RegExp(`^flowmeter:${tenantId}:\\d+:7$`));

    await addUsage(tenantId, 5);
    await run();
    expect(stripe.totalFor(customer)).toBe(12);
    expect((await ledger(tenantId)).map((r) => r.value)).toEqual([7, 5]);

    await run();
    expect(stripe.totalFor(customer)).toBe(12);
  });

  it('a crash between the ledger write and the send re-sends the same identifier and value', async () => {
    const stripe = fakeStripe();
    const { tenantId, customer } = await meteredTenant(9);
    // The claim commits; the process dies before anything reaches Stripe.
    await serviceClient().rpc('claim_meter_deltas', { max_rows: 100, tenant_ids: [tenantId] });
    const [claimed] = await ledger(tenantId);
    expect(claimed.status).toBe('pending');
    await run();
    expect(stripe.accepted.get(claimed.identifier)?.value).toBe(9);
    expect(stripe.totalFor(customer)).toBe(9);
  });

  it('Stripe accepted but the answer was lost: the retry is deduplicated, not billed twice', async () => {
    const stripe = fakeStripe();
    const { tenantId, customer } = await meteredTenant(4);
    stripe.failNext('drop_after');
    const first = await run();
    expect(first.failed).toBe(1);
    expect((await ledger(tenantId))[0].status).toBe('pending');
    await run();
    await expectBilledOnce(stripe, tenantId, customer, 4);
  });

  it('a send Stripe accepted but has not answered when the run must end is cut: failed as unanswered, then sent once', async () => {
    const stripe = fakeStripe();
    const { tenantId, customer } = await meteredTenant(4);
    stripe.failNext('hold_after');
    // A client that would wait a minute: only the run's cut ends the wait.
    const first = await run(stripeClient(60_000), { cutAfterMs: 300 });
    expect(first).toMatchObject({ claimed: 1, sent: 0, failed: 1, deferred: 0 });
    // Stripe holds the event; its answer, released after the run ended, is recorded by no one.
    expect(stripe.received).toHaveLength(1);
    stripe.releaseHeld();
    // An attempt whose outcome is unknown: counted among the failing when it keeps happening.
    expect(await ledger(tenantId)).toMatchObject([
      {
        status: 'pending',
        attempts: 1,
        last_error: UNANSWERED_AT_CUT,
        last_error_kind: 'unavailable',
      },
    ]);

    const second = await run();
    expect(second).toMatchObject({ sent: 1, deferred: 0 });
    await expectBilledOnce(stripe, tenantId, customer, 4);
  });

  it('a retry after the idempotency key expired is refused as a duplicate and recorded as sent', async () => {
    const stripe = fakeStripe();
    const { tenantId, customer } = await meteredTenant(4);
    stripe.failNext('drop_after');
    expect((await run()).failed).toBe(1);
    // A day later: the idempotency key is gone, the identifier is still known.
    stripe.forgetIdempotencyKeys();
    const retry = await run();
    expect(retry).toMatchObject({ sent: 1, failed: 0 });
    expect(stripe.requests).toBe(2);
    await expectBilledOnce(stripe, tenantId, customer, 4);
  });

  it('records usage of a period whose invoice is final as late, and sends nothing for it', async () => {
    const stripe = fakeStripe();
    const { tenantId, customer } = await meteredTenant();
    const lastMonth = new Date(
      Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1) - 86400_000,
    );
    await addUsage(tenantId, 3, lastMonth);
    await run(stripeClient(), { finalizationGraceMinutes: 60 });
    expect(await ledger(tenantId)).toMatchObject([{ value: 3, status: 'late' }]);
    expect(stripe.totalFor(customer)).toBe(0);
  });

  it('stamps usage of an ended period still open for invoicing inside that period', async () => {
    const stripe = fakeStripe();
    const { tenantId } = await meteredTenant();
    const lastMonth = new Date(
      Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1) - 86400_000,
    );
    await addUsage(tenantId, 2, lastMonth);
    await run(stripeClient(), { finalizationGraceMinutes: 72 * 60 * 30 });
    const [row] = await ledger(tenantId);
    const event = stripe.accepted.get(row.identifier);
    expect(event?.timestamp).toBe(
      Math.floor(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1) / 1000) - 1,
    );
  });

  it('runs dry without a Stripe key: computes and lists what it would send, sends nothing', async () => {
    const stripe = fakeStripe();
    const { tenantId, customer } = await meteredTenant(6);
    const summary = await run(null);
    expect(summary.dryRun).toBe(true);
    expect(summary.wouldSend).toContainEqual(
      expect.objectContaining({ stripe_customer_id: customer, value: 6 }),
    );
    expect(stripe.requests).toBe(0);
    expect((await ledger(tenantId))[0].status).toBe('pending');
  });

  it('a dry run lists exactly the events the next run sends, identifier and value', async () => {
    const stripe = fakeStripe();
    const a = await meteredTenant(6);
    const b = await meteredTenant(11);
    const dry = await run(null, {}, [a.tenantId, b.tenantId]);
    // More usage after the dry run is a new delta; the listed events stay as listed.
    await addUsage(a.tenantId, 2);
    await run(stripeClient(), {}, [a.tenantId, b.tenantId]);
    expect(dry.wouldSend).toHaveLength(2);
    for (const listed of dry.wouldSend) {
      expect(stripe.accepted.get(listed.identifier)).toMatchObject({
        customer: listed.stripe_customer_id,
        value: listed.value,
      });
    }
    expect(stripe.totalFor(a.customer)).toBe(8);
    expect(stripe.totalFor(b.customer)).toBe(11);
  });

  it('two overlapping runs bill each delta once', async () => {
    const stripe = fakeStripe();
    const tenants = await Promise.all(Array.from({ length: 6 }, (_, i) => meteredTenant(i + 1)));
    const ids = tenants.map((t) => t.tenantId);
    // The hourly function and an operator's `flowmeter report`, at the same moment: both
    // claim, and each may send a report the other is sending too.
    const [first, second] = await Promise.all([
      run(stripeClient(), { concurrency: 2 }, ids),
      run(stripeClient(), { concurrency: 3 }, ids),
    ]);
    expect(first.failed + second.failed).toBe(0);
    for (const [i, t] of tenants.entries()) {
      expect(stripe.totalFor(t.customer)).toBe(i + 1);
      expect(await ledger(t.tenantId)).toEqual([
        expect.objectContaining({ value: i + 1, status: 'sent' }),
      ]);
    }
    expect(stripe.conflicts).toEqual([]);
  });

  it('stops calling Stripe while it is down (circuit breaker), and catches up afterwards', async () => {
    const stripe = fakeStripe();
    const tenants = await Promise.all(Array.from({ length: 20 }, () => meteredTenant(1)));
    const ids = tenants.map((t) => t.tenantId);
    stripe.faultEach(() => 'server_error');
    const down = await run(stripeClient(), { concurrency: 1 }, ids);
    expect(down.claimed).toBe(20);
    expect(down.deferred).toBeGreaterThan(0);
    expect(down.stoppedBy).toBe('unavailable');
    expect(stripe.requests).toBeLessThan(20);
    stripe.faultEach(undefined);
    const up = await run(stripeClient(), {}, ids);
    expect(up.stoppedBy).toBeNull();
    for (const t of tenants) expect(stripe.totalFor(t.customer)).toBe(1);
  });

  it('one tenant with a bad customer does not stop the others', async () => {
    const stripe = fakeStripe();
    const good = await meteredTenant(3);
    const bad = await meteredTenant(2);
    stripe.rejectCustomer(bad.customer);
    const summary = await run();
    expect(stripe.totalFor(good.customer)).toBe(3);
    expect(summary.failed).toBeGreaterThanOrEqual(1);
    const [row] = await superuser()
      .query('select status, attempts, last_error from public.meter_reports where tenant_id = $1', [
        bad.tenantId,
      ])
      .then((r) => r.rows);
    expect(row).toMatchObject({ status: 'pending', attempts: 1 });
    expect(row.last_error).toMatch(/No such customer/);
  });
});

const FAULTS: StripeFault[] = [
  'server_error',
  'rate_limited',
  'drop_before',
  'drop_after',
  'timeout_after',
];

describe('reporter under faults', () => {
  it.each(Array.from({ length: 100 }, (_, i) => i + 1))(
    'seed %i: Σ reported = Σ billable per tenant-period; no identifier sent with two values',
    async (seed) => {
      const random = prng(seed);
      const stripe = fakeStripe();
      const tenants = await Promise.all(
        Array.from({ length: 2 + Math.floor(random() * 3) }, () => meteredTenant()),
      );
      const faultRate = 0.2 + random() * 0.5;
      stripe.faultEach(() =>
        random() < faultRate ? (FAULTS[Math.floor(random() * FAULTS.length)] as StripeFault) : 'ok',
      );
      const totals = new Map(tenants.map((t) => [t.tenantId, 0]));
      for (let round = 0; round < 4; round++) {
        for (const t of tenants) {
          const n = Math.floor(random() * 20);
          if (n) {
            await addUsage(t.tenantId, n);
            totals.set(t.tenantId, (totals.get(t.tenantId) ?? 0) + n);
          }
        }
        // A "crash" after claiming (ledger written, nothing sent) in some rounds.
        if (random() < 0.3) {
          await serviceClient().rpc('claim_meter_deltas', {
            max_rows: 1000,
            tenant_ids: [...ours],
          });
        } else await run(stripeClient(50), { concurrency: 1 + Math.floor(random() * 4) });
      }
      stripe.faultEach(undefined);
      // Faults over: runs with a timeout no loaded machine hits, until nothing is pending
      // (a bounded number: each run sends everything, or the test fails below).
      for (let i = 0; i < 5; i++) {
        const summary = await run(stripeClient(5000));
        if (summary.claimed === 0) break;
      }
      for (const t of tenants) {
        expect(stripe.totalFor(t.customer)).toBe(totals.get(t.tenantId));
        const rows = await ledger(t.tenantId);
        expect(rows.every((r) => r.status === 'sent')).toBe(true);
        expect(rows.reduce((s, r) => s + r.value, 0)).toBe(totals.get(t.tenantId));
      }
      expect(stripe.conflicts).toEqual([]);
    },
  );
});
