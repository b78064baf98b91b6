import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { runReconciliation } from '../../src/billing/reconcile.ts';
import { type Correction, recordCorrection } from '../../src/billing/record-correction.ts';
import { runReporter } from '../../src/billing/report-usage.ts';
import { sendCorrections } from '../../src/billing/send-corrections.ts';
import type { Db } from '../../src/db/client.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { getTenantDetail } from '../../src/operator-client/index.ts';
import { getUsageCorrections, getUsageHistory } from '../../src/usage-client/index.ts';
import {
  addUsage,
  endCorrectionClaims,
  meteredTenant,
  reporterTestSettings,
  stripeClient,
  TEST_STRIPE_KEY,
} from '../support/billing.ts';
import { useN8nServer } from '../support/collector.ts';
import { FakeStripe, type StripeFault } from '../support/fake-stripe.ts';
import { faultyDb, loseResponse, Rng, rpcFetch } from '../support/faults.ts';
import { createUser, memberOf } from '../support/fixtures.ts';
import { succeeded } from '../support/result.ts';
import { serviceClient, superuser, userClient } from '../support/stack.ts';

/**
 * Corrections of reported periods (flowmeter adjust, reconcile --repair) against the test
 * Stripe: recorded before they are sent, sent exactly once whatever fails, as a meter event,
 * a cancellation within Stripe's 24 hours (with the remainder re-sent) or a credit.
 */
const server = useN8nServer();
const GRACE = reporterTestSettings.finalizationGraceMinutes;

/** A fake whose clock can be moved on (a day later: past Stripe's cancellation window). */
function fakeStripe() {
  const clock = { offset: 0 };
  const stripe = new FakeStripe({ now: () => Date.now() + clock.offset });
  server.use(...stripe.handlers());
  return { stripe, clock };
}

/** An overage plan's tenant with `billable` executions reported (100 included, 50 minor units each above). */
async function reportedTenant(billable: number) {
  const tenant = await meteredTenant(billable);
  await superuser().query(
    `update public.plans set limit_policy = 'overage', overage_unit_amount = 50, currency = 'eur',
       stripe_meter_id = 'mtr_test_corrections'
     where id = (select plan_id from public.tenants where id = $1)`,
    [tenant.tenantId],
  );
  await report([tenant.tenantId]);
  return tenant;
}

const report = (tenantIds: string[]) =>
  succeeded(
    runReporter({
      db: serviceClient(),
      stripe: stripeClient(),
      settings: reporterTestSettings,
      log: silentLogger,
      tenantIds,
    }),
  );

const thisMonth = () => new Date().toISOString().slice(0, 7);

const correct = (
  tenantId: string,
  delta: number,
  reason = `test ${delta} ${Math.random()}`,
  db: Db = serviceClient(),
) =>
  recordCorrection({
    db,
    tenantId,
    delta,
    reason,
    requestedBy: 'test',
    period: { month: thisMonth() },
    finalizationGraceMinutes: GRACE,
  });

const send = (ids?: number[], db: Db = serviceClient(), timeoutMs = 400) =>
  succeeded(
    sendCorrections({
      db,
      stripe: stripeClient(timeoutMs),
      log: silentLogger,
      finalizationGraceMinutes: GRACE,
      ...(ids ? { ids } : {}),
    }),
  );

async function correction(id: number): Promise<Correction> {
  const { rows } = await superuser().query('select * from public.meter_corrections where id = $1', [
    id,
  ]);
  return { ...rows[0], id: Number(rows[0].id) };
}

/** Ledger rows written more than a day ago: past Stripe's window for cancelling them. */
async function ageLedger(tenantId: string, hours: number) {
  await superuser().query(
    `update public.meter_reports set created_at = created_at - make_interval(hours => $2)
     where tenant_id = $1`,
    [tenantId, hours],
  );
}

describe('a correction is recorded before it is sent, and sent the right way', () => {
  it('more usage: a new meter event with the correction’s own identifier', async () => {
    const { stripe } = fakeStripe();
    const { tenantId, customer } = await reportedTenant(120);
    const recorded = await succeeded(correct(tenantId, 15));
    expect(recorded.created).toBe(true);
    expect(recorded.correction).toMatchObject({ method: 'meter_event', status: 'pending' });
    expect(stripe.totalFor(customer)).toBe(120);

    const summary = await send([recorded.correction.id]);
    expect(summary).toMatchObject({ claimed: 1, sent: 1, failed: 0 });
    const event = stripe.accepted.get(recorded.correction.identifier);
    expect(event).toMatchObject({ value: 15, customer, event_name: 'n8n_executions' });
    expect(recorded.correction.identifier).toMatch(/^flowmeter:correction:[0-9a-f]{32}$/);
    expect(stripe.totalFor(customer)).toBe(135);
    expect(await correction(recorded.correction.id)).toMatchObject({ status: 'sent' });
  });

  it('less usage, the value of an event sent within 24 hours: that event is cancelled', async () => {
    const { stripe } = fakeStripe();
    const { tenantId, customer } = await reportedTenant(120);
    const { correction: c } = await succeeded(correct(tenantId, -120));
    expect(c.method).toBe('cancel');
    expect(c.event_value).toBeNull();
    await send([c.id]);
    expect(stripe.totalFor(customer)).toBe(0);
    expect(stripe.adjustmentRequests).toEqual([c.cancels_identifier]);
    expect(await correction(c.id)).toMatchObject({ status: 'sent', cancelled_value: '120' });
  });

  it('a partial reduction within 24 hours cancels the event and re-sends the remainder', async () => {
    const { stripe } = fakeStripe();
    const { tenantId, customer } = await reportedTenant(120);
    const { correction: c } = await succeeded(correct(tenantId, -30));
    expect(c).toMatchObject({ method: 'cancel', event_value: 90 });
    await send([c.id]);
    expect(stripe.totalFor(customer)).toBe(90);
    expect(stripe.accepted.get(c.identifier)?.value).toBe(90);
    expect(await correction(c.id)).toMatchObject({ status: 'sent' });
    expect(stripe.balanceOf(customer)).toBe(0);
  });

  it('past 24 hours: the overage it had billed is credited to the customer, in the plan’s currency', async () => {
    const { stripe } = fakeStripe();
    const { tenantId, customer } = await reportedTenant(120);
    await ageLedger(tenantId, 25);
    const { correction: c } = await succeeded(correct(tenantId, -30));
    // 120 billed, 100 included: only 20 of the 30 were overage, at 50 minor units each.
    expect(c).toMatchObject({ method: 'credit', credit_amount: 1000, currency: 'eur' });
    await send([c.id]);
    expect(stripe.balanceOf(customer)).toBe(-1000);
    const [transaction] = stripe.balanceTransactions.get(customer) ?? [];
    expect(transaction).toMatchObject({
      amount: -1000,
      currency: 'eur',
      metadata: { flowmeter_correction: c.identifier, flowmeter_tenant_id: tenantId },
    });
    expect(await correction(c.id)).toMatchObject({
      status: 'sent',
      stripe_object_id: transaction?.id,
    });
    // The meter keeps what it received: Stripe refuses to change it after a day.
    expect(stripe.totalFor(customer)).toBe(120);
  });

  it('a reduction inside the included quota billed nothing: recorded, nothing sent', async () => {
    const { stripe } = fakeStripe();
    const { tenantId } = await reportedTenant(80);
    await ageLedger(tenantId, 25);
    const { correction: c } = await succeeded(correct(tenantId, -10));
    expect(c).toMatchObject({ method: 'none', status: 'recorded' });
    expect(await send([c.id])).toMatchObject({ claimed: 0 });
    expect(stripe.adjustmentRequests).toEqual([]);
  });

  it('Stripe refusing the cancellation (its 24 hours passed first) turns it into a credit', async () => {
    const { stripe, clock } = fakeStripe();
    const { tenantId, customer } = await reportedTenant(150);
    const { correction: c } = await succeeded(correct(tenantId, -50));
    expect(c.method).toBe('cancel');
    // The correction waited a day (Stripe down, no run): Stripe no longer cancels the event.
    clock.offset = 25 * 3600_000;
    const summary = await send([c.id]);
    expect(summary).toMatchObject({ credited: 1, sent: 1 });
    expect(stripe.refusals.at(-1)?.param).toBe('cancel[identifier]');
    expect(stripe.totalFor(customer)).toBe(150);
    expect(stripe.balanceOf(customer)).toBe(-2500);
    expect(await correction(c.id)).toMatchObject({
      method: 'credit',
      status: 'sent',
      cancels_identifier: null,
      last_error: expect.stringMatching(/not cancelled .*credited instead/),
    });
  });

  it('the same request twice is one correction; another reason is another', async () => {
    fakeStripe();
    const { tenantId } = await reportedTenant(120);
    const first = await succeeded(correct(tenantId, 5, 'missed runs'));
    const again = await succeeded(correct(tenantId, 5, 'missed runs'));
    expect(again).toMatchObject({ created: false, correction: { id: first.correction.id } });
    const other = await succeeded(correct(tenantId, 5, 'more missed runs'));
    expect(other.correction.id).not.toBe(first.correction.id);
  });

  it.each<[string, number, RegExp]>([
    ['0 executions', 0, /not 0/],
    ['more than a billion', 1_000_000_001, /from -1000000000 to 1000000000/],
    ['below zero', -121, /billed for 120 executions: it cannot be reduced by 121/],
  ])('refuses %s, and records nothing', async (_, delta, message) => {
    fakeStripe();
    const { tenantId } = await reportedTenant(120);
    const refused = await correct(tenantId, delta);
    expect(refused).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
    if (!refused.ok) expect(refused.error.message).toMatch(message);
    const { rows } = await superuser().query(
      'select count(*)::int as n from public.meter_corrections where tenant_id = $1',
      [tenantId],
    );
    expect(rows[0].n).toBe(0);
  });

  it('refuses a period not reported yet, an empty reason and more usage for a final invoice', async () => {
    fakeStripe();
    const unreported = await meteredTenant(10);
    const notYet = await correct(unreported.tenantId, 5);
    expect(notYet.ok).toBe(false);
    if (!notYet.ok) expect(notYet.error.message).toMatch(/has not been reported to Stripe yet/);

    const { tenantId } = await reportedTenant(120);
    const noReason = await correct(tenantId, 5, '   ');
    expect(noReason).toMatchObject({ ok: false, error: { code: 'invalid_request' } });

    const lastMonth = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 0));
    await addUsage(tenantId, 3, lastMonth);
    await superuser().query(
      `insert into public.meter_reports (tenant_id, period_start, period_end, stripe_customer_id, event_name,
         reported_through, value, identifier, event_timestamp, status, sent_at)
       select c.tenant_id, c.period_start, c.period_end, 'cus_x', 'n8n_executions', 3, 3,
              'flowmeter:test:' || gen_random_uuid(), c.period_end - interval '1 second', 'sent', now()
       from public.usage_counters c where c.tenant_id = $1 and c.period_end <= now()`,
      [tenantId],
    );
    const final = await recordCorrection({
      db: serviceClient(),
      tenantId,
      delta: 2,
      reason: 'late runs',
      requestedBy: 'test',
      period: { month: lastMonth.toISOString().slice(0, 7) },
      finalizationGraceMinutes: GRACE,
    });
    expect(final.ok).toBe(false);
    if (!final.ok) expect(final.error.message).toMatch(/is final.*Bill it by hand/);
  });
});

describe('record_meter_correction’s answer is read by name', () => {
  it.each(['period_start', 'cancels_identifier'])(
    'an answer whose %s was renamed fails the correction by that name',
    async (key) => {
      fakeStripe();
      const { tenantId } = await reportedTenant(120);
      const renamed = faultyDb(
        rpcFetch(async (call, send) => {
          if (call.fn !== 'record_meter_correction') return send();
          const answer = (await (await send()).json()) as { correction: Record<string, unknown> };
          const { [key]: value, ...row } = answer.correction;
          return Response.json({ ...answer, correction: { ...row, [`${key}_renamed`]: value } });
        }),
      );
      expect(await correct(tenantId, 15, `renamed ${key}`, renamed)).toMatchObject({
        ok: false,
        error: {
          code: 'internal',
          message: expect.stringMatching(
            new RegExp(
              `^record_meter_correction answered in a shape this version does not read:[\\s\\S]*correction\\.${key}$`,
            ),
          ),
        },
      });
    },
  );
});

describe('exactly once under faults', () => {
  it('a step Stripe has not answered when report-usage must end is cut: failed as unanswered, then sent once', async () => {
    const { stripe } = fakeStripe();
    const { tenantId, customer } = await reportedTenant(120);
    const { correction: c } = await succeeded(correct(tenantId, 15));
    stripe.failNext('hold_after');
    // A client that would wait a minute: only the run's cut ends the wait.
    const run = await succeeded(
      runReporter({
        db: serviceClient(),
        stripe: stripeClient(60_000),
        settings: { ...reporterTestSettings, cutAfterMs: 300 },
        log: silentLogger,
        tenantIds: [tenantId],
      }),
    );
    expect(run.corrections).toMatchObject({ claimed: 1, sent: 0, failed: 1 });
    // Stripe holds the event; its answer, released after the run ended, is recorded by no one.
    expect(stripe.accepted.has(c.identifier)).toBe(true);
    stripe.releaseHeld();
    expect(await correction(c.id)).toMatchObject({
      status: 'pending',
      attempts: 1,
      unknown_outcome: true,
      last_error_kind: 'unavailable',
      last_error: expect.stringMatching(/^Stripe had not answered when the run had to end/),
      claimed_until: null,
    });

    // The next run sends it again: Stripe knows the identifier, and it is billed once.
    expect(await send([c.id])).toMatchObject({ claimed: 1, sent: 1, failed: 0 });
    expect(stripe.totalFor(customer)).toBe(135);
    expect(await correction(c.id)).toMatchObject({ status: 'sent' });
  });

  const FAULTS: ReadonlyArray<readonly [number, StripeFault]> = [
    [5, 'ok'],
    [1, 'server_error'],
    [1, 'drop_before'],
    [1, 'drop_after'],
    [1, 'rate_limited'],
  ];

  /**
   * Each seed: a tenant with usage reported, corrections of every method (more usage, a
   * cancellation, a partial cancellation, a credit), sent by runs that meet Stripe faults,
   * lose the database's answer to a recorded outcome (a crash between Stripe's answer and
   * the ledger), and overlap with each other — until nothing is pending. Stripe then holds
   * each correction once: the meter total, the credits and the cancellations are exactly
   * what the ledger says.
   */
  it.each(Array.from({ length: 12 }, (_, i) => i + 1))('seed %i', async (seed) => {
    const rng = new Rng(seed);
    const { stripe } = fakeStripe();
    const billed = rng.int(150, 400);
    const { tenantId, customer } = await reportedTenant(billed);
    await ageLedger(tenantId, 25);
    // The credit first (nothing in the window yet), then an event to cancel, then the rest.
    const credit = await succeeded(correct(tenantId, -rng.int(1, 20)));
    expect(credit.correction.method).toBe('credit');
    const more = await succeeded(correct(tenantId, rng.int(30, 60)));
    await send([more.correction.id]);
    const whole = await succeeded(correct(tenantId, -more.correction.delta));
    expect(whole.correction.method).toBe('cancel');
    const again = await succeeded(correct(tenantId, rng.int(30, 60)));
    await send([again.correction.id]);
    const partial = await succeeded(correct(tenantId, -rng.int(1, again.correction.delta - 1)));
    expect(partial.correction.method).toBe('cancel');
    const ids = [credit, whole, partial].map((r) => r.correction.id);

    const faults = new Rng(seed * 7919);
    stripe.faultEach(() => faults.weighted(FAULTS));
    for (let round = 0; round < 40; round += 1) {
      const pending = await superuser().query(
        `select count(*)::int as n from public.meter_corrections where tenant_id = $1 and status = 'pending'`,
        [tenantId],
      );
      if (pending.rows[0].n === 0) break;
      // A run whose recorded outcomes may lose their answer (it crashed after Stripe's answer).
      const crashing = faultyDb(
        rpcFetch((call, forward) =>
          call.fn === 'record_meter_correction_outcome' && rng.chance(0.3)
            ? loseResponse(call, forward)
            : forward(),
        ),
      );
      const runs = rng.chance(0.5) ? [crashing, serviceClient()] : [crashing];
      await Promise.all(runs.map((db) => send(ids, db)));
      // A crashed run's claim ends with its lease; here, at once.
      await endCorrectionClaims(tenantId);
    }
    stripe.faultEach(undefined);

    const rows = await Promise.all(ids.map(correction));
    expect(rows.map((r) => r.status)).toEqual(['sent', 'sent', 'sent']);
    // Never sent twice: one credit, each event cancelled once, each identifier with one value.
    expect(stripe.balanceTransactions.get(customer)?.length).toBe(1);
    expect(stripe.balanceOf(customer)).toBe(-Number(rows[0]?.credit_amount));
    expect(stripe.conflicts).toEqual([]);
    const cancelled = [...stripe.accepted.values()].filter((e) => e.cancelledAt !== undefined);
    expect(cancelled.map((e) => e.identifier).sort()).toEqual(
      [whole.correction.cancels_identifier, partial.correction.cancels_identifier].sort(),
    );
    // Never lost: the meter holds what was reported plus the corrections that metered.
    expect(stripe.totalFor(customer)).toBe(
      billed +
        more.correction.delta +
        again.correction.delta -
        more.correction.delta +
        partial.correction.delta,
    );
  });
});

describe('a credit whose answer was lost', () => {
  it('is found at Stripe by its marker on the retry, even once the idempotency key is gone', async () => {
    const { stripe } = fakeStripe();
    const { tenantId, customer } = await reportedTenant(150);
    await ageLedger(tenantId, 25);
    const { correction: c } = await succeeded(correct(tenantId, -10));
    stripe.failNext('drop_after');
    expect(await send([c.id])).toMatchObject({ failed: 1, sent: 0 });
    expect(await correction(c.id)).toMatchObject({ status: 'pending', unknown_outcome: true });
    // More than a day later: Stripe no longer replays the first answer.
    stripe.forgetIdempotencyKeys();
    expect(await send([c.id])).toMatchObject({ sent: 1 });
    expect(stripe.balanceTransactions.get(customer)).toHaveLength(1);
    const [transaction] = stripe.balanceTransactions.get(customer) ?? [];
    expect(await correction(c.id)).toMatchObject({
      status: 'sent',
      stripe_object_id: transaction?.id,
    });
  });
});

/** One tenant's reconciliation over the last 40 days, compared with Stripe at once. */
const reconcile = (tenantId: string, repair: boolean) =>
  succeeded(
    runReconciliation({
      db: serviceClient(),
      stripe: stripeClient(),
      log: silentLogger,
      since: new Date(Date.now() - 40 * 86400_000),
      tenantIds: [tenantId],
      settleMs: 0,
      repair,
    }),
  );

describe('reconcile --repair uses the same path for Stripe drift', () => {
  it('Stripe lost usage: a repair meter event brings it back, and the next check is clean', async () => {
    const { stripe } = fakeStripe();
    const { tenantId, customer } = await reportedTenant(120);
    stripe.summaryOffset.set(customer, -20);
    const found = await reconcile(tenantId, false);
    expect(found.stripeFindings).toMatchObject([{ expected: 120, actual: 100, repaired: false }]);

    const repaired = await reconcile(tenantId, true);
    expect(repaired.stripeFindings).toMatchObject([{ expected: 120, actual: 100, repaired: true }]);
    expect(repaired.stripeFindings[0]?.detail).toMatch(/correction \d+ \(meter_event\)/);
    expect(stripe.totalFor(customer)).toBe(140);
    const { rows } = await superuser().query(
      'select kind, delta::int, status from public.meter_corrections where tenant_id = $1',
      [tenantId],
    );
    expect(rows).toEqual([{ kind: 'repair', delta: 20, status: 'sent' }]);

    const clean = await reconcile(tenantId, true);
    expect(clean.stripeFindings).toEqual([]);
    expect(clean.stripeChecked).toBe(1);
  });

  it('Stripe holds too much past 24 hours: credited, and not credited again on the next run', async () => {
    const { stripe } = fakeStripe();
    const { tenantId, customer } = await reportedTenant(120);
    await ageLedger(tenantId, 25);
    stripe.summaryOffset.set(customer, 10);
    const first = await reconcile(tenantId, true);
    expect(first.stripeFindings).toMatchObject([{ expected: 120, actual: 130, repaired: true }]);
    // Stripe billed 30 overage instead of 20: 10 × 50 minor units back.
    expect(stripe.balanceOf(customer)).toBe(-500);
    const second = await reconcile(tenantId, true);
    expect(second.stripeFindings).toEqual([]);
    expect(stripe.balanceTransactions.get(customer)?.length).toBe(1);
  });
});

describe('every correction is visible', () => {
  it('to the tenant’s members (history and the corrections list), never to another tenant’s', async () => {
    fakeStripe();
    const { tenantId } = await reportedTenant(120);
    await ageLedger(tenantId, 25);
    const { correction: c } = await succeeded(correct(tenantId, -30, 'duplicate runs'));
    await send([c.id]);
    const { db } = await memberOf(tenantId);
    const history = await getUsageHistory(db, { tenantId });
    expect(history).toMatchObject({
      error: null,
      data: [{ used: 120, corrected: -30, creditedAmount: 1000 }],
    });
    const corrections = await getUsageCorrections(db, { tenantId });
    expect(corrections).toMatchObject({
      error: null,
      data: [{ delta: -30, reason: 'duplicate runs', method: 'credit', creditAmount: 1000 }],
    });

    const stranger = await userClient(await createUser());
    expect(await getUsageCorrections(stranger, { tenantId })).toEqual({ data: [], error: null });
  });

  it('in the operator console’s tenant detail, with who asked, why and how it was sent', async () => {
    fakeStripe();
    const { tenantId } = await reportedTenant(120);
    const { correction: c } = await succeeded(correct(tenantId, -20, 'double-counted runs'));
    await send([c.id]);
    const operator = await userClient(randomUUID(), {
      email: 'ops@operators.example.test',
      app_metadata: { flowmeter_role: 'operator' },
    });
    const detail = await getTenantDetail(operator, tenantId);
    expect(detail.error).toBeNull();
    expect(detail.data?.corrections).toMatchObject([
      {
        id: c.id,
        kind: 'adjustment',
        delta: -20,
        reason: 'double-counted runs',
        requested_by: 'test',
        method: 'cancel',
        event_value: 100,
        cancels_identifier: c.cancels_identifier,
        status: 'sent',
      },
    ]);
    expect(detail.data?.history[0]).toMatchObject({ corrected: -20, credited_amount: 0 });
  });

  it('Stripe refusing the key stops the corrections at the first: the others keep their attempts for a valid key', async () => {
    const { stripe } = fakeStripe();
    const { tenantId } = await reportedTenant(120);
    const { correction: first } = await succeeded(correct(tenantId, 5));
    const { correction: second } = await succeeded(correct(tenantId, 7));
    stripe.revokeKey(TEST_STRIPE_KEY);
    const stopped = await send([first.id, second.id]);
    expect(stopped).toMatchObject({ stoppedBy: 'auth', failed: 1, sent: 0 });
    expect(await correction(first.id)).toMatchObject({ attempts: 1, last_error_kind: 'auth' });
    expect(await correction(second.id)).toMatchObject({ attempts: 0, status: 'pending' });
  });

  it('in status, with what to do, when a correction keeps failing', async () => {
    const { stripe } = fakeStripe();
    const { tenantId, customer } = await reportedTenant(120);
    await ageLedger(tenantId, 25);
    const { correction: c } = await succeeded(correct(tenantId, -40));
    stripe.rejectCustomer(customer);
    for (let i = 0; i < 3; i += 1) await send([c.id]);
    const { data } = await serviceClient().rpc('operator_status', { tenant_ids: [tenantId] });
    expect((data as { meter_reports: { corrections: unknown } }).meter_reports.corrections).toEqual(
      {
        pending: 1,
        unattempted: 0,
        oldest_unattempted_at: null,
        failing: 1,
        review: 0,
        late: 0,
        last_error: expect.stringMatching(/No such customer/),
      },
    );
  });
});
