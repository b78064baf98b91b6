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

describe('reconcile --repair and a report whose answer was lost', () => {
  it('does not take off the meter usage that a pending report already put there', async () => {
    const source = await createSource(server);
    source.fake.addMany(8, (i) => ({ startedAt: recent(100 - i) }));
    await collect([source]);
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
    // Report A (8) is sent and answered.
    expect(await report(source.tenantId)).toMatchObject({ sent: 1 });
    // Sent over an hour ago: past the reconciliation's settling time.
    await superuser().query(
      "update public.meter_reports set sent_at = sent_at - interval '2 hours' where tenant_id = $1",
      [source.tenantId],
    );

    // Three more executions; report B (3) reaches Stripe, its answer is lost: B stays pending.
    source.fake.addMany(3, (i) => ({ startedAt: recent(50 - i) }));
    await collect([source]);
    stripe.failNext('drop_after');
    expect(await report(source.tenantId)).toMatchObject({ failed: 1 });
    expect(stripe.totalFor(customer)).toBe(11);

    // The daily reconciliation runs before the next report-usage run: Stripe's 11 against
    // the 8 recorded sent is no drift while B's outcome is unknown; it is compared later.
    const reconciled = await succeeded(
      runReconciliation({
        db: serviceClient(),
        stripe: stripeClient,
        log: silentLogger,
        since: monthStart(),
        repair: true,
        tenantIds: [source.tenantId],
      }),
    );
    expect(reconciled).toMatchObject({ stripeChecked: 0, stripeSkipped: 1, stripeFindings: [] });
    // The next report-usage run: B's resend is Stripe's duplicate, recorded as sent.
    await report(source.tenantId);
    const { rows } = await superuser().query(
      "select coalesce(sum(value), 0)::int as sent from public.meter_reports where tenant_id = $1 and status = 'sent'",
      [source.tenantId],
    );
    expect(rows[0].sent).toBe(11);
    // Σ sent = Σ billable must hold at Stripe too: 11 executions billed, not 8.
    expect(stripe.totalFor(customer)).toBe(11);
  });
});
