import pg from 'pg';
import { runReporter } from '../src/billing/report-usage.ts';
import { createServiceClient } from '../src/db/client.ts';
import { startLocalStack } from '../src/local/stack.ts';
import { silentLogger } from '../src/observability/logger.ts';
import { createStripeClient } from '../src/stripe/client.ts';
import { fmt } from './stats.ts';
import { startLocalStripe } from './stripe-local.ts';
import { machine, parseNumberOptions, printTargets, writeResults } from './support.ts';

/**
 * npm run bench (second part): reporter throughput against a local Stripe-compatible
 * endpoint with a latency and a rate limit, showing that the reporter stays under the
 * limit and uses most of it. Writes bench/results/reporter-<time>.json.
 */
const options = parseNumberOptions('bench-reporter', {
  tenants: ['--tenants <n>', 'tenant-periods with unreported usage', 1500],
  rate: ['--rate <n>', "the endpoint's rate limit, requests per second", 100],
  latency: ['--latency <ms>', "the endpoint's answer latency", 25],
  concurrency: ['--concurrency <n>', 'reporter concurrency', 16],
});

const stack = await startLocalStack();
const stripe = await startLocalStripe({ latencyMs: options.latency, ratePerSecond: options.rate });
const admin = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
admin.on('error', () => {});
try {
  await admin.query(
    "insert into public.plans (id, name, included_executions, limit_policy, overage_unit_amount, stripe_meter_event_name) values ('metered', 'Metered', 1000, 'overage', 0.2, 'n8n_executions')",
  );
  await admin.query(
    `with t as (
       insert into public.tenants (name, plan_id, stripe_customer_id)
       select 'bench ' || i, 'metered', 'cus_bench' || i from generate_series(1, $1) i returning id)
     insert into public.usage_counters (tenant_id, period_start, period_end, executions, billable, billable_success)
     select id, date_trunc('month', now()), date_trunc('month', now()) + interval '1 month', 500, 500, 500 from t`,
    [options.tenants],
  );

  const started = performance.now();
  // One run claims at most the 1,000 rows a call hands over: runs back to back until one
  // finds nothing left, as the hourly runs would.
  const runOnce = () =>
    runReporter({
      // The client the reporter function uses in production (rpcFetch included).
      db: createServiceClient({
        SUPABASE_URL: stack.supabaseUrl,
        SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
      }),
      stripe: createStripeClient({
        secretKey: 'sk_test_bench',
        apiBase: stripe.url,
        maxNetworkRetries: 2,
      }),
      settings: {
        budgetMs: 10 * 60_000,
        ratePerSecond: options.rate,
        concurrency: options.concurrency,
        maxRows: 1000,
        finalizationGraceMinutes: 60,
      },
      log: silentLogger,
    });
  const summary = { runs: 0, sent: 0, failed: 0 };
  for (;;) {
    const run = await runOnce();
    if (!run.ok) throw new Error(run.error.message);
    if (run.value.claimed === 0) break;
    summary.runs += 1;
    summary.sent += run.value.sent;
    summary.failed += run.value.failed;
    if (run.value.sent + run.value.failed === 0) break;
  }
  const wallSeconds = (performance.now() - started) / 1000;

  // The busiest one-second window of arrivals at the endpoint.
  let busiest = 0;
  for (let i = 0, j = 0; i < stripe.arrivals.length; i++) {
    while ((stripe.arrivals[i] as number) - (stripe.arrivals[j] as number) >= 1000) j++;
    busiest = Math.max(busiest, i - j + 1);
  }
  const first = stripe.arrivals[0] ?? 0;
  const last = stripe.arrivals.at(-1) ?? 0;
  const sendRate =
    stripe.arrivals.length > 1 ? (stripe.arrivals.length - 1) / ((last - first) / 1000) : 0;
  const result = {
    at: new Date().toISOString(),
    machine: machine(),
    options,
    runs: summary.runs,
    sent: summary.sent,
    failed: summary.failed,
    rejectedWith429: stripe.rejected,
    wallSeconds,
    tenantPeriodsPerSecond: summary.sent / wallSeconds,
    sendRatePerSecond: sendRate,
    busiestSecond: busiest,
    utilization: sendRate / options.rate,
    targets: {
      'never over the limit (busiest second ≤ limit, no 429)':
        busiest <= options.rate && stripe.rejected === 0,
      'uses ≥ 90 % of the limit': sendRate / options.rate >= 0.9,
      'everything sent': summary.sent === options.tenants,
    },
  };
  console.log(
    `reporter: ${summary.sent} tenant-periods in ${summary.runs} runs, ${fmt(wallSeconds, 1)} s = ${fmt(result.tenantPeriodsPerSecond, 1)}/s; ` +
      `send rate ${fmt(sendRate, 1)}/s of a ${options.rate}/s limit (${fmt(result.utilization * 100, 1)} %), ` +
      `busiest second ${busiest}, 429s ${stripe.rejected}, latency ${options.latency} ms`,
  );
  printTargets(result.targets);
  await writeResults('reporter', result.at, result);
} finally {
  await admin.end();
  await stripe.close();
  await stack.stop();
}
