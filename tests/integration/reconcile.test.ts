import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  lastResumePoint,
  reconcileRunSummary,
  runReconciliation,
} from '../../src/billing/reconcile.ts';
import { runReporter } from '../../src/billing/report-usage.ts';
import { EXIT } from '../../src/cli/main.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createStripeClient } from '../../src/stripe/client.ts';
import { runCliWith } from '../support/cli.ts';
import { collect, createSource } from '../support/collector.ts';
import { recent } from '../support/fixtures.ts';
import { useFakeStripe } from '../support/reporter-runs.ts';
import { succeeded } from '../support/result.ts';
import { serviceClient, superuser, uniqueId } from '../support/stack.ts';
import { attentionAfterRun } from '../support/status.ts';

const { server, stripe } = useFakeStripe();
const stripeClient = createStripeClient({ secretKey: 'sk_test_reconcile', maxNetworkRetries: 0 });
const monthStart = () =>
  new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1));

async function collectedTenant(n: number) {
  const source = await createSource(server);
  source.fake.addMany(n, (i) => ({ startedAt: recent(100 - i) }));
  await collect([source]);
  return source;
}

const reconcile = (
  tenantIds: string[],
  repair = false,
  more: Partial<Parameters<typeof runReconciliation>[0]> = {},
) =>
  succeeded(
    runReconciliation({
      db: serviceClient(),
      stripe: stripeClient,
      log: silentLogger,
      since: monthStart(),
      repair,
      tenantIds,
      settleMs: 0,
      ...more,
    }),
  );

describe('reconciliation of counters with raw rows', () => {
  it('finds nothing when the collector kept them equal', async () => {
    const source = await collectedTenant(25);
    expect((await reconcile([source.tenantId])).counterFindings).toEqual([]);
  });

  it('reports drift loudly, and repairs it only when asked', async () => {
    const source = await collectedTenant(10);
    await superuser().query(
      'update public.usage_counters set billable = billable + 3, billable_success = billable_success + 3, executions = executions + 3 where tenant_id = $1',
      [source.tenantId],
    );
    const found = await reconcile([source.tenantId]);
    expect(found.counterFindings).toMatchObject([
      { kind: 'counter_drift', expected: 10, actual: 13, repaired: false },
    ]);

    const repaired = await reconcile([source.tenantId], true);
    expect(repaired.counterFindings).toMatchObject([{ expected: 10, actual: 13, repaired: true }]);
    const { rows } = await superuser().query(
      'select billable::int, executions::int from public.usage_counters where tenant_id = $1',
      [source.tenantId],
    );
    expect(rows).toEqual([{ billable: 10, executions: 10 }]);
    expect((await reconcile([source.tenantId])).counterFindings).toEqual([]);
  });
});

describe('reconciliation with Stripe', () => {
  // Only this tenant: a run over all tenants would send, to this file's fake Stripe, the
  // usage of tenants other test files (the reporter fault seeds) are reporting at the
  // same time, and their totals would come up short.
  const report = (tenantId: string) =>
    succeeded(
      runReporter({
        db: serviceClient(),
        stripe: stripeClient,
        log: silentLogger,
        tenantIds: [tenantId],
        settings: {
          budgetMs: 30_000,
          ratePerSecond: 1000,
          concurrency: 2,
          maxRows: 1000,
          finalizationGraceMinutes: 60,
        },
      }),
    );

  async function reportedTenant(n: number) {
    const source = await collectedTenant(n);
    const customer = `cus_${randomBytes(6).toString('hex')}`;
    const meter = `mtr_${randomBytes(6).toString('hex')}`;
    await superuser().query(
      "update public.plans set stripe_meter_event_name = 'n8n_executions', stripe_meter_id = $2 where id = $1",
      [source.planId, meter],
    );
    await superuser().query('update public.tenants set stripe_customer_id = $2 where id = $1', [
      source.tenantId,
      customer,
    ]);
    const reported = await report(source.tenantId);
    return { ...source, customer, reported };
  }

  it('agrees when Stripe summed what was sent', async () => {
    const t = await reportedTenant(12);
    const summary = await reconcile([t.tenantId]);
    expect(summary.stripeChecked).toBe(1);
    expect(summary.stripeFindings).toEqual([]);
  });

  it('compares nothing once its time for the meter is up, counting what waits for the next run', async () => {
    const a = await reportedTenant(3);
    const b = await reportedTenant(4);
    const run = (until: number) =>
      reconcile([a.tenantId, b.tenantId], false, {
        until: { meter: until, previews: until },
        concurrency: 2,
      });
    expect(await run(Date.now() - 1)).toMatchObject({ stripeChecked: 0, stripeDeferred: 2 });
    expect(await run(Date.now() + 60_000)).toMatchObject({
      stripeChecked: 2,
      stripeDeferred: 0,
      stripeFindings: [],
    });
  });

  it('runs that run out of time start where the last one stopped, so together they compare every customer-period', async () => {
    const tenants = [await reportedTenant(2), await reportedTenant(3), await reportedTenant(4)];
    const ids = tenants.map((t) => t.tenantId);
    // Stripe lost one execution of each: every comparison made finds its tenant's drift.
    for (const t of tenants) stripe.summaryOffset.set(t.customer, -1);
    // A clock that moves a millisecond a reading: each comparison reads it twice before it
    // starts, so with `until` two readings ahead the run has time for exactly one.
    const oneEach = (resumeFrom: Parameters<typeof runReconciliation>[0]['resumeFrom']) => {
      const start = Date.now();
      let readings = 0;
      return reconcile(ids, false, {
        concurrency: 1,
        startAt: 0,
        resumeFrom,
        now: () => start + readings++,
        until: { meter: start + 2, previews: start },
      });
    };
    const found: string[] = [];
    let resumeFrom = null as Awaited<ReturnType<typeof oneEach>>['stripeResumeFrom'];
    const resumePoints: string[] = [];
    for (let run = 0; run < 3; run++) {
      const summary = await oneEach(resumeFrom);
      expect(summary).toMatchObject({ stripeChecked: 1, stripeDeferred: 2 });
      found.push(...summary.stripeFindings.map((f) => f.tenant_id));
      resumeFrom = summary.stripeResumeFrom;
      resumePoints.push(resumeFrom?.tenant_id ?? 'none');
    }
    expect([...found].sort()).toEqual([...ids].sort());
    // Each run hands on the next one, and the third hands the walk back to the first.
    expect(resumePoints).toEqual([found[1], found[2], found[0]]);

    // What the scheduled function reads back: the latest successful run's resume point.
    const name = uniqueId('reconcile').toLowerCase();
    const record = async (ok: boolean, summary: unknown) => {
      const started = await serviceClient().rpc('start_scheduled_run', { function_name: name });
      await serviceClient().rpc('finish_scheduled_run', {
        id: started.data as string,
        ok,
        summary: summary as never,
      });
    };
    expect(await lastResumePoint(serviceClient(), name)).toEqual({ ok: true, value: null });
    const last = await oneEach(resumeFrom);
    await record(true, reconcileRunSummary(last));
    await record(false, null);
    expect(await lastResumePoint(serviceClient(), name)).toEqual({
      ok: true,
      value: last.stripeResumeFrom,
    });
    await record(true, { another: 'shape' });
    expect(await lastResumePoint(serviceClient(), name)).toEqual({ ok: true, value: null });
  });

  it('records a finding when Stripe holds a different total', async () => {
    const t = await reportedTenant(8);
    stripe.summaryOffset.set(t.customer, -2);
    const summary = await reconcile([t.tenantId]);
    expect(summary.stripeFindings).toMatchObject([
      { kind: 'stripe_drift', expected: 8, actual: 6 },
    ]);
    const { rows } = await superuser().query(
      "select count(*)::int as n from public.reconciliation_findings where tenant_id = $1 and kind = 'stripe_drift'",
      [t.tenantId],
    );
    expect(rows[0].n).toBe(1);
  });

  it('counts a comparison Stripe refuses as failed, with its message, flagged in status until one succeeds', async () => {
    const t = await reportedTenant(5);
    stripe.rejectCustomer(t.customer);
    const refused = await reconcile([t.tenantId]);
    expect(refused).toMatchObject({ stripeChecked: 0, stripeFailed: 1, stripeFindings: [] });
    expect(refused.stripeError).toMatch(
      new RegExp(`^${t.customer} on mtr_\\w+: No such customer: '${t.customer}'$`),
    );
    const flagged = await attentionAfterRun(
      [t.tenantId],
      'reconcile-usage',
      reconcileRunSummary(refused),
    );
    expect(flagged).toEqual([
      expect.stringMatching(
        new RegExp(
          `^reconcile-usage could not compare 1 customer-period with Stripe's meter \\(latest: ${t.customer} on mtr_\\w+: No such customer: '${t.customer}'\\): fix what Stripe names .*\`flowmeter reconcile\` compares now`,
        ),
      ),
    ]);

    stripe.restoreCustomer(t.customer);
    const compared = await reconcile([t.tenantId]);
    expect(compared).toMatchObject({ stripeChecked: 1, stripeFailed: 0, stripeError: null });
    expect(
      await attentionAfterRun([t.tenantId], 'reconcile-usage', reconcileRunSummary(compared)),
    ).toEqual([]);
  });

  it('flowmeter reconcile says which comparisons Stripe refused and exits 1', async () => {
    const t = await reportedTenant(2);
    // Sent over an hour ago: the command's settling time has passed.
    await superuser().query(
      "update public.meter_reports set sent_at = sent_at - interval '2 hours' where tenant_id = $1",
      [t.tenantId],
    );
    stripe.rejectCustomer(t.customer);
    const env = { STRIPE_SECRET_KEY: 'sk_test_reconcile' };
    const refused = await runCliWith(['reconcile', '--tenant', t.tenantId], { env });
    expect(refused.code).toBe(EXIT.failed);
    expect(refused.out).toMatch(/Stripe: 0 customer-periods checked/);
    expect(refused.err).toMatch(
      new RegExp(
        `Stripe did not answer for 1 customer-period \\(latest: ${t.customer} on mtr_\\w+: No such customer: '${t.customer}'\\): not compared`,
      ),
    );
    stripe.restoreCustomer(t.customer);
    const compared = await runCliWith(['reconcile', '--tenant', t.tenantId], { env });
    expect(compared.code).toBe(EXIT.ok);
    expect(compared.out).toMatch(/Stripe: 1 customer-period checked, 0 disagree/);
  });

  /**
   * A tenant whose 8 executions were reported over an hour ago (past the reconciliation's
   * settling time), with 3 more collected since and not reported yet.
   */
  async function settledThenThreeMore() {
    const t = await reportedTenant(8);
    expect(t.reported).toMatchObject({ sent: 1 });
    await superuser().query(
      "update public.meter_reports set sent_at = sent_at - interval '2 hours' where tenant_id = $1",
      [t.tenantId],
    );
    t.fake.addMany(3, (i) => ({ startedAt: recent(50 - i) }));
    await collect([t]);
    return t;
  }

  it('reconcile --repair does not take off the meter usage that a pending report whose answer was lost already put there', async () => {
    // Report A (8) is sent and answered; report B (the 3 more) reaches Stripe, its answer
    // is lost: B stays pending.
    const t = await settledThenThreeMore();
    stripe.failNext('drop_after');
    expect(await report(t.tenantId)).toMatchObject({ failed: 1 });
    expect(stripe.totalFor(t.customer)).toBe(11);

    // The daily reconciliation runs before the next report-usage run: Stripe's 11 against
    // the 8 recorded sent is no drift while B's outcome is unknown; it is compared later.
    // The scheduled run's own settling time, not this file's none.
    const reconciled = await reconcile([t.tenantId], true, { settleMs: undefined });
    expect(reconciled).toMatchObject({ stripeChecked: 0, stripeSkipped: 1, stripeFindings: [] });
    // The next report-usage run: B's resend is Stripe's duplicate, recorded as sent.
    await report(t.tenantId);
    const { rows } = await superuser().query(
      "select coalesce(sum(value), 0)::int as sent from public.meter_reports where tenant_id = $1 and status = 'sent'",
      [t.tenantId],
    );
    expect(rows[0].sent).toBe(11);
    // Σ sent = Σ billable must hold at Stripe too: 11 executions billed, not 8.
    expect(stripe.totalFor(t.customer)).toBe(11);
  });

  it('reconcile --repair does not credit usage that a late report whose answer was lost may have put on the invoice', async () => {
    // Report B (the 3 more) reaches Stripe, its answer is lost; the invoice is final before
    // the next send, so B is recorded late with its outcome unknown (as report-usage's
    // lateness does).
    const t = await settledThenThreeMore();
    stripe.failNext('drop_after');
    expect(await report(t.tenantId)).toMatchObject({ failed: 1 });
    expect(stripe.totalFor(t.customer)).toBe(11);
    const { rows: pending } = await superuser().query(
      "select id from public.meter_reports where tenant_id = $1 and status = 'pending'",
      [t.tenantId],
    );
    const late = await serviceClient().rpc('record_meter_report', {
      id: pending[0].id,
      outcome: 'late',
      error: 'invoice final',
    });
    expect(late.data).toMatchObject({ status: 'late', unknown_outcome: true });

    const reconciled = await reconcile([t.tenantId], true, { settleMs: undefined });
    expect(reconciled).toMatchObject({ stripeChecked: 0, stripeSkipped: 1, stripeFindings: [] });
    const { rows: corrections } = await superuser().query(
      'select 1 from public.meter_corrections where tenant_id = $1',
      [t.tenantId],
    );
    expect(corrections).toEqual([]);
    expect(stripe.totalFor(t.customer)).toBe(11);
  });

  it('compares a period whose pending report Stripe refused with an answer: it cannot be on the meter', async () => {
    const t = await settledThenThreeMore();
    stripe.rejectCustomer(t.customer);
    expect(await report(t.tenantId)).toMatchObject({ failed: 1 });
    stripe.restoreCustomer(t.customer);
    const { rows } = await superuser().query(
      "select attempts, unknown_outcome from public.meter_reports where tenant_id = $1 and status = 'pending'",
      [t.tenantId],
    );
    expect(rows).toEqual([{ attempts: 1, unknown_outcome: false }]);
    // Stripe holds the 8 sent: compared, in step, not skipped for the refused report.
    expect(await reconcile([t.tenantId], false, { settleMs: undefined })).toMatchObject({
      stripeChecked: 1,
      stripeSkipped: 0,
      stripeFindings: [],
    });
  });
});
