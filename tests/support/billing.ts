import { randomBytes } from 'node:crypto';
import { recordCorrection } from '../../src/billing/record-correction.ts';
import type { ReporterSettings } from '../../src/billing/report-usage.ts';
import { createStripeClient } from '../../src/stripe/client.ts';
import { createPlan, createTenant } from './fixtures.ts';
import { serviceClient, superuser } from './stack.ts';

/** Settings no test run is limited by unless it says so. */
export const reporterTestSettings: ReporterSettings = {
  budgetMs: 60_000,
  ratePerSecond: 10_000,
  concurrency: 4,
  maxRows: 10_000,
  finalizationGraceMinutes: 60,
};

export const TEST_STRIPE_KEY = 'sk_test_flowmeter';

export const stripeClient = (timeoutMs = 400, secretKey = TEST_STRIPE_KEY) =>
  createStripeClient({ secretKey, maxNetworkRetries: 0, timeoutMs });

/** Adds billable usage to the tenant's period holding `at`, as the collector would. */
export async function addUsage(tenantId: string, n: number, at = new Date()) {
  await superuser().query(
    `insert into public.usage_counters as c (tenant_id, period_start, period_end, executions, billable, billable_success)
     select $1, p.period_start, p.period_end, $2, $2, $2
     from private.billing_period(null, null, $3) p
     on conflict (tenant_id, period_start) do update set executions = c.executions + $2,
       billable = c.billable + $2, billable_success = c.billable_success + $2`,
    [tenantId, n, at],
  );
}

/** A metered tenant with a Stripe customer, usage counted in the current UTC month. */
export async function meteredTenant(billable = 0) {
  const plan = await createPlan({ included_executions: 100 });
  await superuser().query(
    "update public.plans set stripe_meter_event_name = 'n8n_executions' where id = $1",
    [plan.id],
  );
  const tenant = await createTenant(plan.id);
  const customer = `cus_${randomBytes(6).toString('hex')}`;
  await superuser().query('update public.tenants set stripe_customer_id = $2 where id = $1', [
    tenant.id,
    customer,
  ]);
  if (billable) await addUsage(tenant.id, billable);
  return { tenantId: tenant.id, customer };
}

/** Ends the claims on the tenant's corrections at once, as their lease running out would. */
export const endCorrectionClaims = (tenantId: string) =>
  superuser().query(
    'update public.meter_corrections set claimed_until = null where tenant_id = $1',
    [tenantId],
  );

/** The columns of a meter report most tests check. */
const LEDGER_COLUMNS = `identifier, value::int, status, reported_through::int, attempts, last_error,
  last_error_kind, period_end`;

/** The tenant's meter reports, oldest first: `columns` of each (a select list). */
export async function ledger(tenantId: string, columns = LEDGER_COLUMNS) {
  const { rows } = await superuser().query(
    `select ${columns} from public.meter_reports where tenant_id = $1 order by id`,
    [tenantId],
  );
  return rows;
}

/**
 * A clock for a reporter run that never sleeps: `sleep` moves it on instead, and records
 * every wait asked for.
 */
export function manualClock(start: number) {
  const clock = {
    at: start,
    waits: [] as number[],
    now: () => clock.at,
    sleep: async (ms: number) => {
      clock.waits.push(ms);
      clock.at += ms;
    },
  };
  return clock;
}

/** A correction of `delta` executions for the tenant's current period, recorded, not sent. */
export async function recordedCorrection(tenantId: string, delta = 5, reason = 'missed usage') {
  const recorded = await recordCorrection({
    db: serviceClient(),
    tenantId,
    delta,
    reason,
    requestedBy: 'test',
    period: { month: new Date().toISOString().slice(0, 7) },
    finalizationGraceMinutes: 60,
  });
  if (!recorded.ok) throw new Error(recorded.error.message);
  return recorded.value.correction;
}
