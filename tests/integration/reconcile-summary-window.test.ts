import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { runReconciliation } from '../../src/billing/reconcile.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { stripeClient } from '../support/billing.ts';
import { createPlan, createTenant } from '../support/fixtures.ts';
import { reporterRun, useStripeServer } from '../support/reporter-runs.ts';
import { succeeded } from '../support/result.ts';
import { serviceClient, superuser } from '../support/stack.ts';

const { server, fakeStripe } = useStripeServer();
const report = reporterRun({});

/**
 * A tenant billed on a period Stripe started at 43 seconds past a minute (a subscription
 * created at 10:17:43: the webhook stores current_period_start and _end as they come),
 * `startedAgo` (an SQL interval) ago, with 5 executions reported to Stripe.
 */
async function reportedOddSecondPeriod(stripe: ReturnType<typeof fakeStripe>, startedAgo: string) {
  const plan = await createPlan({ included_executions: 100 });
  const meter = `mtr_${randomBytes(6).toString('hex')}`;
  await superuser().query(
    "update public.plans set stripe_meter_event_name = 'n8n_executions', stripe_meter_id = $2 where id = $1",
    [plan.id, meter],
  );
  const tenant = await createTenant(plan.id);
  const customer = `cus_${randomBytes(6).toString('hex')}`;
  const { rows } = await superuser().query(
    `update public.tenants set stripe_customer_id = $2,
       current_period_start = date_trunc('minute', now() - $3::interval) + interval '43 seconds',
       current_period_end = date_trunc('minute', now() - $3::interval) + interval '1 month 43 seconds'
     where id = $1 returning current_period_start as s, current_period_end as e`,
    [tenant.id, customer, startedAgo],
  );
  await superuser().query(
    `insert into public.usage_counters (tenant_id, period_start, period_end, executions, billable, billable_success)
     values ($1, $2, $3, 5, 5, 5)`,
    [tenant.id, rows[0].s, rows[0].e],
  );
  await report([tenant.id]);
  expect(stripe.totalFor(customer)).toBe(5);
  return { tenant, periodStart: rows[0].s as Date };
}

const reconcile = (tenantId: string, periodStart: Date) =>
  succeeded(
    runReconciliation({
      db: serviceClient(),
      stripe: stripeClient(5000),
      log: silentLogger,
      since: new Date(periodStart.getTime() - 86400_000),
      tenantIds: [tenantId],
      settleMs: 0,
    }),
  );

describe("reconciliation asks for Stripe's meter event summaries as Stripe takes them", () => {
  it('a billing period Stripe started at an odd second is asked for in whole minutes', async () => {
    const stripe = fakeStripe();
    const { tenant, periodStart } = await reportedOddSecondPeriod(stripe, '3 days');

    const asked: URL[] = [];
    server.events.on('request:start', ({ request }) => {
      const url = new URL(request.url);
      if (url.pathname.endsWith('/event_summaries')) asked.push(url);
    });
    const summary = await reconcile(tenant.id, periodStart);
    expect(asked).toHaveLength(1);
    // stripe-node's MeterListEventSummariesParams: start_time and end_time "Must be aligned
    // with minute boundaries"; Stripe refuses other windows.
    const [url] = asked;
    expect(Number(url?.searchParams.get('start_time')) % 60).toBe(0);
    expect(Number(url?.searchParams.get('end_time')) % 60).toBe(0);
    expect(summary).toMatchObject({ stripeChecked: 1, stripeFailed: 0, stripeFindings: [] });
  });

  it("usage sent after such a period's end is stamped inside the window that is compared", async () => {
    const stripe = fakeStripe();
    // The period ended minutes ago (its invoice still open): its usage is stamped at its end.
    const { tenant, periodStart } = await reportedOddSecondPeriod(stripe, '1 month 10 minutes');
    const summary = await reconcile(tenant.id, periodStart);
    expect(summary).toMatchObject({ stripeChecked: 1, stripeFailed: 0, stripeFindings: [] });
  });
});
