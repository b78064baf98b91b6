import { readdir, readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { type AttentionInputs, needsAttention } from '../../src/ops/attention.ts';
import { SCHEDULED_FUNCTIONS } from '../../src/ops/scheduled-functions.ts';
import { healthyStatus } from '../support/healthy-status.ts';

const now = '2026-12-02T12:00:00.000Z';
/** A start that many minutes before `now`. */
const startedAgo = (minutes: number) => new Date(Date.parse(now) - minutes * 60_000).toISOString();

/** report-usage's latest run, started 3 minutes before `now`, as it recorded `summary`. */
const reportUsageRan = (summary?: unknown) => [
  {
    function_name: 'report-usage',
    last_started_at: startedAgo(3),
    failures_since_success: 0,
    last_error: null,
    last_summary: summary,
  },
];

const reportsHealthy = healthyStatus.meter_reports;
const healthy: AttentionInputs = {
  ...healthyStatus,
  generated_at: now,
  scheduled_functions: reportUsageRan(),
};

/** `healthy` with these corrections, and these other changes to its meter reports. */
const withCorrections = (
  corrections: Partial<typeof reportsHealthy.corrections>,
  reports: Partial<typeof reportsHealthy> = {},
): AttentionInputs => ({
  ...healthy,
  meter_reports: {
    ...reportsHealthy,
    ...reports,
    corrections: { ...reportsHealthy.corrections, ...corrections },
  },
});

describe('needsAttention', () => {
  it('is empty when all is well', () => {
    expect(needsAttention(healthy)).toEqual([]);
  });

  it('names each kind of problem', () => {
    expect(
      needsAttention({
        ...healthy,
        sources: { failing: 2, stalled: 1 },
        meter_reports: { ...reportsHealthy, late: 1 },
        alert_deliveries: { ...healthy.alert_deliveries, given_up: 3 },
        webhook_deliveries: {
          ...healthy.webhook_deliveries,
          failing_endpoints: [
            {
              id: 'e1',
              url: 'https://hooks.example.com/in',
              retrying: 2,
              given_up: 1,
              last_error: 'HTTP 500',
            },
          ],
        },
        scheduled_functions: [],
      }),
    ).toEqual([
      '2 sources failing',
      '1 enabled source not collected for 30 minutes or more, without an error: check that collect-usage runs (its latest run above) and that the sources are due (`flowmeter sources list`); `flowmeter collect` collects them now',
      '1 late meter report (invoice already final): not billed; bill the usage by hand (invoice item or next invoice), see docs/billing.md "Late usage"',
      '3 alert deliveries given up',
      'webhook endpoint e1 (https://hooks.example.com/in) is failing: 2 deliveries retrying, 1 given up (last error: HTTP 500): fix the receiver; `flowmeter webhooks deliveries --failed --endpoint e1` lists them, `flowmeter webhooks retry e1` resends the given-up ones',
    ]);
  });

  it('tells late reports Stripe may have billed (an attempt had no answer) from those it did not', () => {
    const findings = needsAttention({
      ...healthy,
      meter_reports: { ...reportsHealthy, late: 3, late_unknown: 1 },
    });
    expect(findings).toHaveLength(2);
    expect(findings[0]).toMatch(/^2 late meter reports \(invoice already final\): not billed;/);
    expect(findings[1]).toMatch(
      /^1 late meter report with outcome unknown .*: check Stripe before billing by hand/,
    );
    expect(
      needsAttention({
        ...healthy,
        meter_reports: { ...reportsHealthy, late: 1, late_unknown: 1 },
      }),
    ).toEqual([expect.not.stringMatching(/not billed;/)]);
  });

  it("names deliveries nobody attempted for longer than two of their sender's intervals", () => {
    const waiting = (alertMinutes: number, webhookMinutes: number) =>
      needsAttention({
        ...healthy,
        alert_deliveries: {
          given_up: 0,
          unattempted: 4,
          oldest_unattempted_at: startedAgo(alertMinutes),
        },
        webhook_deliveries: {
          failing_endpoints: [],
          unattempted: 1,
          oldest_unattempted_at: startedAgo(webhookMinutes),
        },
      });
    // deliver-alerts runs every 5 minutes, deliver-webhooks every minute.
    expect(waiting(15, 7)).toEqual([]);
    expect(waiting(16, 8)).toEqual([
      "4 alert deliveries never attempted, the oldest waiting 16 minutes: deliver-alerts is not sending them (its latest run's summary says how many it deferred); `flowmeter alerts deliver` sends them now",
      '1 webhook delivery never attempted, the oldest waiting 8 minutes: deliver-webhooks is not sending them (its latest run\'s summary says how many it deferred): when it defers them for want of time, raise WEBHOOK_CONCURRENCY (docs/webhooks.md "Throughput"); `flowmeter webhooks deliver` sends them now',
    ]);
  });

  it('names tenants on a plan metered in Stripe without a Stripe customer: their usage is never reported', () => {
    const unlinked = (tenants: number, executions: number) =>
      needsAttention({
        ...healthy,
        meter_reports: {
          ...reportsHealthy,
          unlinked: {
            tenants,
            executions,
            example_tenant_id: tenants ? 't-1' : null,
            example_tenant_name: tenants ? 'Acme' : null,
          },
        },
      });
    expect(unlinked(0, 0)).toEqual([]);
    expect(unlinked(2, 1234)).toEqual([
      '2 tenants on a plan metered in Stripe have no Stripe customer (e.g. Acme t-1): 1,234 billable executions not reported to Stripe; link each to its customer (subscribe it through Checkout with metadata flowmeter_tenant_id, or set tenants.stripe_customer_id; docs/billing.md "Subscription sync"), or move it to a plan without stripe_meter_event_name; the next report-usage run reports what it used',
    ]);
    expect(unlinked(1, 1)[0]).toMatch(
      /^1 tenant on a plan metered in Stripe has no Stripe customer/,
    );
  });

  it('names what reconciliation found and did not repair, with the latest finding', () => {
    expect(
      needsAttention({
        ...healthy,
        reconciliation: {
          unrepaired: 2,
          last_kind: 'invoice_preview_drift',
          last_detail: "Stripe's upcoming invoice for sub_1 bills 120 executions for 500 eur",
        },
      }),
    ).toEqual([
      `2 reconciliation findings in the last 30 days not repaired (latest invoice_preview_drift: Stripe's upcoming invoice for sub_1 bills 120 executions for 500 eur): each is in the table public.reconciliation_findings; see docs/billing.md "Reconciliation"`,
    ]);
  });

  it("names the comparisons reconcile-usage's latest run could not make, from its recorded summary", () => {
    const afterRun = (summary: unknown) =>
      needsAttention({
        ...healthy,
        scheduled_functions: [
          {
            function_name: 'reconcile-usage',
            last_started_at: startedAgo(60),
            failures_since_success: 0,
            last_error: null,
            last_summary: summary,
          },
        ],
      });
    const ran = {
      counterFindings: 0,
      stripeChecked: 4,
      stripeDeferred: 0,
      stripeResumeFrom: null,
      stripeFailed: 0,
      stripeError: null,
      stripeFindings: 0,
      previewChecked: 2,
      previewFindings: 0,
      previewSkipped: 0,
      previewFailed: 0,
      previewError: null,
    };
    expect(afterRun(ran)).toEqual([]);
    // Deferred comparisons are made by later runs: not a failure.
    expect(afterRun({ ...ran, stripeDeferred: 4 })).toEqual([]);
    expect(
      afterRun({
        ...ran,
        stripeFailed: 2,
        stripeError: "cus_1 on mtr_1: No such customer: 'cus_1'",
      }),
    ).toEqual([
      "reconcile-usage could not compare 2 customer-periods with Stripe's meter (latest: cus_1 on mtr_1: No such customer: 'cus_1'): fix what Stripe names (a customer deleted in Stripe, a restricted key without read access to billing meters or invoices); `flowmeter reconcile` compares now, and the next reconcile-usage run without failures clears this",
    ]);
    expect(
      afterRun({
        ...ran,
        stripeFailed: 1,
        stripeError: 'cus_1 on mtr_1: boom',
        previewFailed: 1,
        previewError: 'tenant t1: Stripe did not preview the invoice: down',
      })[0],
    ).toMatch(
      /^reconcile-usage could not compare 1 customer-period with Stripe's meter or 1 invoice preview with flowmeter's estimate \(latest: cus_1 on mtr_1: boom\)/,
    );
    expect(
      afterRun({ ...ran, previewFailed: 3, previewError: 'tenant t1: Stripe did not preview' })[0],
    ).toMatch(
      /^reconcile-usage could not compare 3 invoice previews with flowmeter's estimate \(latest: tenant t1/,
    );
    // Deferral is no failure, until going round takes longer than a week.
    expect(afterRun({ ...ran, stripeChecked: 100, stripeDeferred: 600 })).toEqual([]);
    expect(afterRun({ ...ran, stripeChecked: 100, stripeDeferred: 650, stripeFailed: 50 })).toEqual(
      [
        expect.stringMatching(/^reconcile-usage could not compare 50 customer-periods/),
        "reconcile-usage compares 100 of 800 customer-periods with Stripe's meter a day: going round them all takes 8 days, and a drift can go unseen that long: raise RECONCILE_CONCURRENCY (Stripe allows about 100 reads a second in live mode); `flowmeter reconcile` compares them all now",
      ],
    );
    expect(afterRun({ ...ran, stripeChecked: 0, stripeDeferred: 3 })).toEqual([
      "reconcile-usage compared none of 3 customer-periods with Stripe's meter in its latest run (its time for them ran out first): raise RECONCILE_CONCURRENCY (Stripe allows about 100 reads a second in live mode); `flowmeter reconcile` compares them all now",
    ]);
    // None recorded (the run failed: its own finding says so) is no finding of its own.
    expect(afterRun(null)).toEqual([]);
    // One status cannot read (another version's shape) hides failures: a finding.
    expect(afterRun({ ...ran, stripeFailed: 'many' })).toEqual([
      "reconcile-usage's latest run recorded a summary this flowmeter cannot read (stripeFailed: Invalid input: expected number, received string), so whether it could compare everything with Stripe is unknown: it was recorded by another flowmeter version; if this status runs a version other than the deployed functions', use theirs; `flowmeter reconcile` compares now and says what failed",
    ]);
    const { previewFailed: _dropped, ...older } = ran;
    expect(afterRun(older)[0]).toMatch(/cannot read \(previewFailed: Invalid input/);
    expect(afterRun('done')[0]).toMatch(/cannot read \(summary: Invalid input/);
  });

  it('names reports never sent for longer than two of report-usage’s hours, with a dry run as their cause, except behind a refused key', () => {
    const waiting = (minutes: number, summary: unknown = { dryRun: false, deferred: 7 }) =>
      needsAttention({
        ...healthy,
        meter_reports: {
          ...reportsHealthy,
          unattempted: 7,
          oldest_unattempted_at: startedAgo(minutes),
        },
        scheduled_functions: reportUsageRan(summary),
      });
    // Two hourly runs plus five minutes: one that missed a run is not yet a finding.
    expect(waiting(125)).toEqual([]);
    expect(waiting(126)).toEqual([
      "7 meter reports never sent, the oldest waiting 2 hours: report-usage defers them run after run (its latest run's summary says how many); unless Stripe failures named here stop its runs early, it is not keeping up: raise REPORTER_RATE_PER_SECOND (Stripe allows about 1,000 a second in live mode), REPORTER_BUDGET_SECONDS or REPORTER_MAX_ROWS; `flowmeter report` sends them now",
    ]);
    // Unsent by configuration, not by a failure, but not billed either.
    expect(waiting(125, { dryRun: true, deferred: 0 })).toEqual([]);
    expect(waiting(600, { dryRun: true, deferred: 0 })).toEqual([
      '7 meter reports never sent, the oldest waiting 10 hours: report-usage runs dry (no STRIPE_SECRET_KEY where it runs), so this usage is not billed: set STRIPE_SECRET_KEY (its next run sends them), or move these tenants to plans without a Stripe meter (stripe_meter_event_name)',
    ]);
    expect(waiting(600, null)).toHaveLength(1);
    // Stopped at the circuit breaker: named from that run on, with what to check instead of
    // a rate or budget to raise.
    const outage = { dryRun: false, deferred: 7, stoppedBy: 'unavailable' };
    expect(waiting(5, outage)).toEqual([
      "7 meter reports waiting: report-usage's latest run stopped sending because Stripe kept failing (no answer, timeouts or 5xx errors), so this usage is not billed yet: check Stripe's status page (status.stripe.com) and that the site's functions reach Stripe (api.stripe.com, or STRIPE_API_BASE where set); the next run after Stripe answers again sends them (or now: `flowmeter report`)",
    ]);
    expect(waiting(600, outage)).toEqual(waiting(5, outage));
    expect(waiting(600, { ...outage, stoppedBy: 42 })[0]).toMatch(/not keeping up/);
    const refused = needsAttention({
      ...healthy,
      meter_reports: {
        ...reportsHealthy,
        unattempted: 7,
        oldest_unattempted_at: startedAgo(600),
        auth_failing: true,
      },
    });
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatch(/^Stripe refuses the API key/);
  });

  it('names corrections that cannot reach Stripe by themselves, with what to do', () => {
    const findings = needsAttention(
      withCorrections({ failing: 2, review: 1, late: 1, last_error: 'No such customer' }),
    );
    expect(findings).toHaveLength(3);
    expect(findings[0]).toMatch(
      /^2 corrections failed 3 or more times \(latest: No such customer\): fix/,
    );
    expect(findings[1]).toMatch(/^1 correction to check by hand: .*look in Stripe/);
    expect(findings[2]).toMatch(
      /^1 correction not metered \(invoice already final\): bill or credit it by hand/,
    );
  });

  it('names corrections never sent for longer than two of report-usage’s hours, except in a dry run or behind a refused key', () => {
    const waiting = (minutes: number, reports: Partial<typeof reportsHealthy> = {}) =>
      needsAttention(
        withCorrections({ unattempted: 2, oldest_unattempted_at: startedAgo(minutes) }, reports),
      );
    expect(waiting(125)).toEqual([]);
    expect(waiting(126)).toEqual([
      '2 corrections never sent, the oldest waiting 2 hours: Stripe bills the uncorrected usage until they are; report-usage sends them first in each run, within a quarter of its budget, so unless Stripe failures named here stop its runs, it has too many for that: raise REPORTER_BUDGET_SECONDS; `flowmeter report` sends them now (`flowmeter corrections list` lists them)',
    ]);
    const refused = waiting(600, { auth_failing: true });
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatch(/^Stripe refuses the API key/);
    expect(
      needsAttention({
        ...withCorrections({ unattempted: 2, oldest_unattempted_at: startedAgo(600) }),
        scheduled_functions: reportUsageRan({ dryRun: true }),
      }),
    ).toEqual([]);
  });

  it("names corrections report-usage's latest run left because Stripe kept failing, instead of asking for more budget", () => {
    const afterRun = (stoppedBy: unknown, pending = 5) =>
      needsAttention({
        ...withCorrections({
          pending,
          unattempted: Math.min(pending, 2),
          oldest_unattempted_at: pending > 0 ? startedAgo(600) : null,
        }),
        scheduled_functions: reportUsageRan({
          dryRun: false,
          corrections: { claimed: 5, stoppedBy },
        }),
      });
    expect(afterRun('unavailable')).toEqual([
      "5 corrections waiting: report-usage's latest run stopped sending corrections because Stripe kept failing (no answer, timeouts or 5xx errors), and Stripe bills the uncorrected usage until they are sent: check Stripe's status page (status.stripe.com) and that the site's functions reach Stripe (api.stripe.com, or STRIPE_API_BASE where set); the next run after Stripe answers again sends them (or now: `flowmeter report`)",
    ]);
    // Not stopped by Stripe: the waiting ones are named with the budget's advice.
    expect(afterRun(null)).toEqual([
      expect.stringMatching(/^2 corrections never sent, .*raise REPORTER_BUDGET_SECONDS/),
    ]);
    expect(afterRun(42)).toEqual([expect.stringMatching(/^2 corrections never sent/)]);
    // Sent since (by `flowmeter report`): nothing waits.
    expect(afterRun('unavailable', 0)).toEqual([]);
  });

  it('flags a scheduled function from its first failure since a success, with the error', () => {
    expect(
      needsAttention({
        ...healthy,
        scheduled_functions: [
          {
            function_name: 'report-usage',
            last_started_at: startedAgo(10),
            failures_since_success: 1,
            last_error: 'Stripe is down',
          },
          {
            function_name: 'deliver-alerts',
            last_started_at: startedAgo(1),
            failures_since_success: 0,
            last_error: null,
          },
          {
            function_name: 'collect-usage',
            last_started_at: startedAgo(4),
            failures_since_success: 3,
            last_error: 'did not finish: killed or timed out',
          },
        ],
      }),
    ).toEqual([
      'report-usage failed 1 time since its last success (Stripe is down)',
      'collect-usage failed 3 times since its last success (did not finish: killed or timed out)',
    ]);
  });

  it("ignores runs recorded under names that are not this project's scheduled functions", () => {
    expect(
      needsAttention({
        ...healthy,
        scheduled_functions: [
          {
            function_name: 'one-off-script',
            last_started_at: startedAgo(90 * 24 * 60),
            failures_since_success: 5,
            last_error: 'x',
          },
        ],
      }),
    ).toEqual([]);
  });

  const overdue = (name: string, minutesAgo: number, failures = 0) =>
    needsAttention({
      ...healthy,
      scheduled_functions: [
        {
          function_name: name,
          last_started_at: startedAgo(minutesAgo),
          failures_since_success: failures,
          last_error: failures > 0 ? 'boom' : null,
        },
      ],
    });

  it.each([
    ['collect-usage', 25, 26, 'every 10 minutes', 'flowmeter collect'],
    ['deliver-alerts', 15, 16, 'every 5 minutes', 'flowmeter alerts deliver'],
    ['report-usage', 125, 126, 'hourly', 'flowmeter report'],
    ['reconcile-usage', 2885, 2886, 'daily', 'flowmeter reconcile'],
    ['deliver-webhooks', 7, 8, 'every minute', 'flowmeter webhooks deliver'],
  ])(
    'flags %s as overdue only after two missed intervals and five minutes (%i vs %i minutes)',
    (name, onTime, late, every, byHand) => {
      expect(overdue(name, onTime)).toEqual([]);
      const [finding, ...rest] = overdue(name, late);
      expect(rest).toEqual([]);
      expect(finding).toMatch(
        new RegExp(
          `^${name} has not run for \\d+ (minutes|hours|days) \\(it is scheduled ${every}\\): check that the site's scheduled functions are deployed and enabled in Netlify`,
        ),
      );
      expect(finding).toContain(`\`${byHand}\` does its work now`);
    },
  );

  it('names how long ago an overdue function last started, and its failures as well', () => {
    expect(overdue('collect-usage', 47, 2)).toEqual([
      "collect-usage has not run for 47 minutes (it is scheduled every 10 minutes): check that the site's scheduled functions are deployed and enabled in Netlify and see its function log; `flowmeter collect` does its work now",
      'collect-usage failed 2 times since its last success (boom)',
    ]);
    expect(overdue('reconcile-usage', 4 * 24 * 60)[0]).toMatch(
      /^reconcile-usage has not run for 4 days \(it is scheduled daily\)/,
    );
  });
});

describe('SCHEDULED_FUNCTIONS', () => {
  it('lists exactly the names the Netlify functions record their runs under', async () => {
    const dir = new URL('../../netlify/functions/', import.meta.url);
    const recorded: string[] = [];
    for (const file of await readdir(dir)) {
      const source = await readFile(new URL(file, dir), 'utf8');
      for (const match of source.matchAll(/scheduledFunction\('([a-z0-9-]+)'/g)) {
        recorded.push(match[1] as string);
      }
    }
    expect(recorded.sort()).toEqual(Object.keys(SCHEDULED_FUNCTIONS).sort());
  });

  it('states the interval each schedule in netlify.toml or the function itself runs at', async () => {
    const schedules = new Map<string, string>();
    const toml = await readFile(new URL('../../netlify.toml', import.meta.url), 'utf8');
    for (const m of toml.matchAll(/\[functions\."([a-z0-9-]+)"\]\s*\n\s*schedule = "([^"]+)"/g)) {
      schedules.set(m[1] as string, m[2] as string);
    }
    const dir = new URL('../../netlify/functions/', import.meta.url);
    for (const file of await readdir(dir)) {
      const source = await readFile(new URL(file, dir), 'utf8');
      const own = source.match(/schedule: '([^']+)'/);
      if (own) schedules.set(file.replace(/\.m?ts$/, ''), own[1] as string);
    }
    /** The minutes between runs of the cron forms the project uses; any other form fails. */
    const minutesBetween = (cron: string) => {
      if (cron === '* * * * *') return 1;
      const step = cron.match(/^\*\/(\d+) \* \* \* \*$/);
      if (step) return Number(step[1]);
      if (/^\d+ \* \* \* \*$/.test(cron)) return 60;
      if (/^\d+ \d+ \* \* \*$/.test(cron)) return 24 * 60;
      throw new Error(`state this schedule's interval in SCHEDULED_FUNCTIONS by hand: ${cron}`);
    };
    const stated = Object.fromEntries(
      Object.entries(SCHEDULED_FUNCTIONS).map(([name, f]) => [name, f.everyMinutes]),
    );
    const scheduled = Object.fromEntries(
      Object.keys(SCHEDULED_FUNCTIONS).map((name) => [
        name,
        minutesBetween(schedules.get(name) ?? `no schedule for ${name}`),
      ]),
    );
    expect(stated).toEqual(scheduled);
  });
});
