import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { runReconciliation } from '../../src/billing/reconcile.ts';
import { runReporter } from '../../src/billing/report-usage.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createStripeClient } from '../../src/stripe/client.ts';
import { collect, createSource, useN8nServer } from '../support/collector.ts';
import { FakeStripe } from '../support/fake-stripe.ts';
import { recent } from '../support/fixtures.ts';
import { succeeded } from '../support/result.ts';
import { serviceClient, superuser } from '../support/stack.ts';

const server = useN8nServer();
const stripe = new FakeStripe();
server.use(...stripe.handlers());
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
    // Only this tenant: a run over all tenants would send, to this file's fake Stripe, the
    // usage of tenants other test files (the reporter fault seeds) are reporting at the
    // same time, and their totals would come up short.
    await runReporter({
      db: serviceClient(),
      stripe: stripeClient,
      log: silentLogger,
      tenantIds: [source.tenantId],
      settings: {
        budgetMs: 30_000,
        ratePerSecond: 1000,
        concurrency: 2,
        maxRows: 1000,
        finalizationGraceMinutes: 60,
      },
    });
    return { ...source, customer };
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
});
