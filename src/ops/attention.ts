import { formatDistanceStrict } from 'date-fns';
import { z } from 'zod';
import {
  type ReconcileRunSummary,
  reconcileRunSummarySchema,
} from '../billing/reconcile-run-summary.ts';
import { plural } from '../domain/words.ts';
import { STRIPE_KEPT_FAILING } from '../stripe/errors.ts';
import { reportReviewSteps, STRIPE_REPLAY_WINDOW_HOURS } from '../stripe/replay-window.ts';
import {
  isOverdue,
  isScheduledFunction,
  SCHEDULED_FUNCTIONS,
  type ScheduledFunctionName,
  scheduleInWords,
} from './scheduled-functions.ts';

/** The parts of operator_status() that decide whether a person is needed. */
export interface AttentionInputs {
  /** When the status was read (the database's clock): what "overdue" is measured against. */
  generated_at: string;
  sources: { failing: number; stalled: number };
  meter_reports: {
    unattempted: number;
    oldest_unattempted_at: string | null;
    late: number;
    /** Of the late ones, those whose earlier attempt had no answer: Stripe may hold them. */
    late_unknown: number;
    /** Not sent again until a person has checked Stripe (an answer lost a day ago). */
    review: number;
    failing: number;
    failing_threshold: number;
    auth_failing: boolean;
    auth_error: string | null;
    unlinked: {
      tenants: number;
      executions: number;
      example_tenant_id: string | null;
      example_tenant_name: string | null;
    };
    corrections: {
      pending: number;
      unattempted: number;
      oldest_unattempted_at: string | null;
      failing: number;
      review: number;
      late: number;
      last_error: string | null;
    };
  };
  stripe_events: {
    rejected: number;
    last_rejected_id: string | null;
    last_reason: string | null;
    customers_without_tenant: number;
    last_customer_without_tenant: { customer_id: string; plan_id: string; event_id: string } | null;
  };
  reconciliation: { unrepaired: number; last_kind: string | null; last_detail: string | null };
  alert_deliveries: {
    given_up: number;
    unattempted: number;
    oldest_unattempted_at: string | null;
  };
  webhook_deliveries: {
    unattempted: number;
    oldest_unattempted_at: string | null;
    failing_endpoints: Array<{
      id: string;
      url: string;
      retrying: number;
      given_up: number;
      last_error: string | null;
    }>;
  };
  scheduled_functions: Array<{
    function_name: string;
    last_started_at: string;
    failures_since_success: number;
    last_error: string | null;
    last_summary?: unknown;
  }>;
}

/** What to check when report-usage stopped at its circuit breaker, and when what waits is sent. */
const STRIPE_OUTAGE_CHECKS =
  "check Stripe's status page (status.stripe.com) and that the site's functions reach Stripe (api.stripe.com, or STRIPE_API_BASE where set); the next run after Stripe answers again sends them (or now: `flowmeter report`)";

const latest = (error: string | null) => (error ? ` (latest: ${error.slice(0, 120)})` : '');

/**
 * Corrections that cannot reach Stripe on their own: held back by a Stripe outage that
 * stopped report-usage's latest run, never sent for longer than report-usage's overdue rule
 * (unsentAttention's, as for reports; Stripe bills the uncorrected amount meanwhile),
 * failing run after run, waiting for a person to check Stripe, or metered usage whose
 * invoice closed first.
 */
function correctionAttention(status: AttentionInputs) {
  const { corrections } = status.meter_reports;
  const outage = correctionsStoppedByOutage(status);
  // A refused key, a dry run and an outage hold corrections back like reports: their
  // findings say so.
  const waiting =
    !status.meter_reports.auth_failing &&
    !reportsRunDry(status) &&
    !outage &&
    waitingTooLong(
      status.generated_at,
      corrections,
      'report-usage',
      `${plural(corrections.unattempted, 'correction')} never sent`,
    );
  return [
    outage &&
      `${plural(corrections.pending, 'correction')} waiting: report-usage's latest run stopped sending corrections because ${STRIPE_KEPT_FAILING}, and Stripe bills the uncorrected usage until they are sent: ${STRIPE_OUTAGE_CHECKS}`,
    waiting &&
      `${waiting}: Stripe bills the uncorrected usage until they are; report-usage sends them first in each run, within a quarter of its budget, so unless Stripe failures named here stop its runs, it has too many for that: raise REPORTER_BUDGET_SECONDS; \`flowmeter report\` sends them now (\`flowmeter corrections list\` lists them)`,
    corrections.failing > 0 &&
      `${plural(corrections.failing, 'correction')} failed 3 or more times${latest(corrections.last_error)}: fix what Stripe names (customer, meter, currency); report-usage retries them every hour (or now: \`flowmeter report\`)`,
    corrections.review > 0 &&
      `${plural(corrections.review, 'correction')} to check by hand: an earlier attempt's answer was lost over a day ago; look in Stripe whether it took what the correction asked (its last error says what), then \`flowmeter corrections resolve <id> --stripe-cancelled yes|no\` for a cancellation, \`--stripe-has yes|no\` for a meter event`,
    corrections.late > 0 &&
      `${plural(corrections.late, 'correction')} not metered (invoice already final): bill or credit it by hand, see docs/billing.md "Corrections"`,
  ];
}

/**
 * Stripe customers subscribed to a plan with no tenant linked (the newest subscription event
 * of each found none): flowmeter applies no plan to them and bills none of their usage.
 */
function customersWithoutTenantAttention(events: AttentionInputs['stripe_events']) {
  const latest = events.last_customer_without_tenant;
  if (events.customers_without_tenant === 0 || !latest) return false;
  const others =
    events.customers_without_tenant > 1
      ? ` and ${plural(events.customers_without_tenant - 1, 'other customer')}`
      : '';
  return `Stripe customer ${latest.customer_id}${others} subscribed to a plan (${latest.plan_id}) with no tenant linked, so flowmeter applies no plan to them and bills none of their usage: link each to its tenant (\`flowmeter tenants link <tenant> --stripe-customer ${latest.customer_id}\`, or \`flowmeter tenants add … --stripe-customer\`), then resend the subscription event (${latest.event_id}) from the Stripe Dashboard; see docs/billing.md "What an event does"`;
}

/**
 * Billing's share, each with what to do: a key Stripe refuses (from its first answer, since
 * nothing can be sent until it changes), reports never sent (unsentAttention) or failing run
 * after run, usage that reached no invoice, webhook events that could not be applied, and
 * what reconciliation found or could not compare.
 */
function stripeAttention(status: AttentionInputs) {
  const { meter_reports: reports, stripe_events: events, reconciliation } = status;
  const reconciled = reconcileSummary(status);
  return [
    reports.auth_failing &&
      `Stripe refuses the API key${reports.auth_error ? ` (${reports.auth_error.slice(0, 120)})` : ''}: set STRIPE_SECRET_KEY to a valid secret or restricted key with write access to meter events; pending reports are sent by the next run`,
    unsentAttention(status),
    unlinkedAttention(reports.unlinked),
    reports.failing > 0 &&
      `${plural(reports.failing, 'meter report')} failed ${reports.failing_threshold} or more times: flowmeter status shows the latest error (each report's is in the table public.meter_reports); fix the customer, meter or Stripe account it names`,
    reports.review > 0 &&
      `${plural(reports.review, 'meter report')} to check by hand: an attempt's answer was lost over ${STRIPE_REPLAY_WINDOW_HOURS} hours ago, so Stripe may no longer recognise the identifier and a resend could bill it twice; ${reportReviewSteps()} (yes: recorded sent; no: sent by the next run)`,
    reports.late - reports.late_unknown > 0 &&
      `${plural(reports.late - reports.late_unknown, 'late meter report')} (invoice already final): not billed; bill the usage by hand (invoice item or next invoice), see docs/billing.md "Late usage"`,
    reports.late_unknown > 0 &&
      `${plural(reports.late_unknown, 'late meter report')} with outcome unknown (invoice already final; an attempt before it had no answer, so Stripe may have billed it): check Stripe before billing by hand: look each one's identifier (public.meter_reports, status late and unknown_outcome) up among the meter's events in the Stripe Dashboard and bill by hand only what Stripe does not hold, see docs/billing.md "Late usage"`,
    ...correctionAttention(status),
    customersWithoutTenantAttention(events),
    events.rejected > 0 &&
      `${plural(events.rejected, 'Stripe webhook event')} rejected${events.last_rejected_id ? ` (latest ${events.last_rejected_id}: ${(events.last_reason ?? '').slice(0, 120)})` : ''}: fix the cause, then resend the event from the Stripe Dashboard; see docs/billing.md "Rejected events"`,
    reconciled.unreadable !== undefined && reconcileUnreadableAttention(reconciled.unreadable),
    reconciled.summary && reconcileFailedAttention(reconciled.summary),
    reconciled.summary && reconcileBehindAttention(reconciled.summary),
    reconciliation.unrepaired > 0 &&
      `${plural(reconciliation.unrepaired, 'reconciliation finding')} in the last 30 days not repaired${reconciliation.last_kind ? ` (latest ${reconciliation.last_kind}: ${(reconciliation.last_detail ?? '').slice(0, 160)})` : ''}: each is in the table public.reconciliation_findings; see docs/billing.md "Reconciliation"`,
  ];
}

/**
 * What status reads of report-usage's run summary (ReporterSummary): a field of another
 * shape, as another flowmeter version may have recorded it, reads as absent.
 */
const reportRunSummarySchema = z.object({
  dryRun: z.boolean().optional().catch(undefined),
  stoppedBy: z.string().nullable().optional().catch(undefined),
  corrections: z
    .object({ stoppedBy: z.string().nullable() })
    .nullable()
    .optional()
    .catch(undefined),
});

/** report-usage's latest run summary; empty when its latest run recorded none. */
const reportRun = ({ scheduled_functions: functions }: AttentionInputs) => {
  const recorded = functions.find((f) => f.function_name === 'report-usage')?.last_summary;
  const parsed = reportRunSummarySchema.safeParse(recorded);
  return parsed.success ? parsed.data : {};
};

/** Whether report-usage's latest run was a dry run (no STRIPE_SECRET_KEY: nothing is sent). */
const reportsRunDry = (status: AttentionInputs) => reportRun(status).dryRun === true;

/**
 * Whether corrections wait because report-usage's latest run stopped sending them at its
 * circuit breaker, Stripe failing to answer: not for want of budget, and until a run gets
 * through.
 */
const correctionsStoppedByOutage = (status: AttentionInputs) =>
  status.meter_reports.corrections.pending > 0 &&
  reportRun(status).corrections?.stoppedBy === 'unavailable';

/**
 * reconcile-usage's latest run summary: none when its latest run recorded none (it failed,
 * or never ran: the run's own finding says so), or the zod issue that makes it unreadable.
 */
const reconcileSummary = ({
  scheduled_functions: functions,
}: AttentionInputs): { summary?: ReconcileRunSummary; unreadable?: string } => {
  const recorded = functions.find((f) => f.function_name === 'reconcile-usage')?.last_summary;
  if (recorded === null || recorded === undefined) return {};
  const parsed = reconcileRunSummarySchema.safeParse(recorded);
  if (parsed.success) return { summary: parsed.data };
  const [issue] = parsed.error.issues;
  return { unreadable: `${issue?.path.join('.') || 'summary'}: ${issue?.message ?? 'unreadable'}` };
};

/**
 * A summary status cannot read hides whether Stripe refused comparisons and how far behind
 * the walk is, so it is a finding rather than silence: in practice the deployed functions
 * and this status run different flowmeter versions. An upgrade alone does not raise it as
 * long as reconcileRunSummarySchema only gains optional fields (see there).
 */
const reconcileUnreadableAttention = (unreadable: string) =>
  `reconcile-usage's latest run recorded a summary this flowmeter cannot read (${unreadable.slice(0, 120)}), so whether it could compare everything with Stripe is unknown: it was recorded by another flowmeter version; if this status runs a version other than the deployed functions', use theirs; \`flowmeter reconcile\` compares now and says what failed`;

/** Longer than this to compare every customer-period once is a finding. */
const LONGEST_ROUND_DAYS = 7;

/**
 * A daily reconciliation that compares too few customer-periods with Stripe's meter to go
 * round them all within a week (each run resumes where the last stopped): a drift would go
 * unseen that long, and one in a period's last days found only after its invoice is final.
 */
function reconcileBehindAttention(summary: ReconcileRunSummary) {
  if (summary.stripeDeferred === 0) return false;
  const total = summary.stripeChecked + summary.stripeDeferred + summary.stripeFailed;
  const days = summary.stripeChecked === 0 ? Infinity : Math.ceil(total / summary.stripeChecked);
  if (days <= LONGEST_ROUND_DAYS) return false;
  const pace =
    summary.stripeChecked === 0
      ? `reconcile-usage compared none of ${plural(total, 'customer-period')} with Stripe's meter in its latest run (its time for them ran out first)`
      : `reconcile-usage compares ${summary.stripeChecked} of ${plural(total, 'customer-period')} with Stripe's meter a day: going round them all takes ${days} days, and a drift can go unseen that long`;
  return `${pace}: raise RECONCILE_CONCURRENCY (Stripe allows about 100 reads a second in live mode); \`flowmeter reconcile\` compares them all now`;
}

/**
 * Comparisons reconcile-usage's latest run could not make because Stripe refused or failed
 * them: no drift would be found there, so "no findings" would not mean "in step". Named
 * until a run compares without failures.
 */
function reconcileFailedAttention(summary: ReconcileRunSummary) {
  const { stripeFailed, stripeError, previewFailed, previewError } = summary;
  if (stripeFailed === 0 && previewFailed === 0) return false;
  const what = [
    stripeFailed > 0 && `${plural(stripeFailed, 'customer-period')} with Stripe's meter`,
    previewFailed > 0 && `${plural(previewFailed, 'invoice preview')} with flowmeter's estimate`,
  ].filter(Boolean);
  const error = stripeError ?? previewError;
  return `reconcile-usage could not compare ${what.join(' or ')}${latest(error)}: fix what Stripe names (a customer deleted in Stripe, a restricted key without read access to billing meters or invoices); \`flowmeter reconcile\` compares now, and the next reconcile-usage run without failures clears this`;
}

/**
 * "N things never <verb>, the oldest waiting …" when something waiting for `sender` has
 * waited longer than its overdue rule (two of its intervals plus five minutes); false
 * otherwise. The rule reports and deliveries nobody attempts share.
 */
function waitingTooLong(
  now: string,
  waiting: { unattempted: number; oldest_unattempted_at: string | null },
  sender: ScheduledFunctionName,
  what: string,
): string | false {
  const oldest = waiting.oldest_unattempted_at;
  if (waiting.unattempted === 0 || oldest === null || !isOverdue(sender, oldest, now)) return false;
  return `${what}, the oldest waiting ${formatDistanceStrict(oldest, now)}`;
}

/**
 * Usage that nothing will ever report: tenants on a plan metered in Stripe (its
 * stripe_meter_event_name set) with no Stripe customer. No run fails, so without this the
 * usage would go unbilled in silence; linked later, it is reported then.
 */
function unlinkedAttention(unlinked: AttentionInputs['meter_reports']['unlinked']) {
  if (unlinked.tenants === 0) return false;
  const example = unlinked.example_tenant_id
    ? ` (e.g. ${unlinked.example_tenant_name ?? 'tenant'} ${unlinked.example_tenant_id})`
    : '';
  return `${plural(unlinked.tenants, 'tenant')} on a plan metered in Stripe ${unlinked.tenants === 1 ? 'has' : 'have'} no Stripe customer${example}: ${plural(unlinked.executions, 'billable execution')} not reported to Stripe; link each to its customer (subscribe it through Checkout with metadata flowmeter_tenant_id, or set tenants.stripe_customer_id; docs/billing.md "Subscription sync"), or move it to a plan without stripe_meter_event_name; the next report-usage run reports what it used`;
}

/**
 * Reports never attempted for longer than report-usage's overdue rule (two of its intervals
 * plus five minutes), although nothing failed them: it runs (or its own finding says it does
 * not) but cannot keep up, its rate, budget or rows per run too small for the usage. Its
 * latest run stopped at its circuit breaker (Stripe failing to answer): named at once, with
 * what to check, since no setting helps. While it runs dry (no Stripe key)
 * they wait by its configuration, not by a failure, but they are not billed either: the
 * same rule names them, with that cause.
 */
function unsentAttention(status: AttentionInputs) {
  const reports = status.meter_reports;
  // A refused key defers every report after the first: its own finding says what to do.
  if (reports.auth_failing) return false;
  // An outage holds them back from the run it stopped on, however long they have waited.
  if (reports.unattempted > 0 && reportRun(status).stoppedBy === 'unavailable') {
    return `${plural(reports.unattempted, 'meter report')} waiting: report-usage's latest run stopped sending because ${STRIPE_KEPT_FAILING}, so this usage is not billed yet: ${STRIPE_OUTAGE_CHECKS}`;
  }
  const waiting = waitingTooLong(
    status.generated_at,
    reports,
    'report-usage',
    `${plural(reports.unattempted, 'meter report')} never sent`,
  );
  if (waiting && reportsRunDry(status)) {
    return `${waiting}: report-usage runs dry (no STRIPE_SECRET_KEY where it runs), so this usage is not billed: set STRIPE_SECRET_KEY (its next run sends them), or move these tenants to plans without a Stripe meter (stripe_meter_event_name)`;
  }
  return (
    waiting &&
    `${waiting}: report-usage defers them run after run (its latest run's summary says how many); unless Stripe failures named here stop its runs early, it is not keeping up: raise REPORTER_RATE_PER_SECOND (Stripe allows about 1,000 a second in live mode), REPORTER_BUDGET_SECONDS or REPORTER_MAX_ROWS; \`flowmeter report\` sends them now`
  );
}

/** Each enabled webhook endpoint whose deliveries fail, with how to see and resend them. */
const webhookAttention = ({ webhook_deliveries: webhooks }: AttentionInputs) =>
  webhooks.failing_endpoints.map(
    (e) =>
      `webhook endpoint ${e.id} (${e.url}) is failing: ${plural(e.retrying, 'delivery', 'deliveries')} retrying, ${e.given_up} given up${e.last_error ? ` (last error: ${e.last_error.slice(0, 120)})` : ''}: fix the receiver; \`flowmeter webhooks deliveries --failed --endpoint ${e.id}\` lists them${e.given_up > 0 ? `, \`flowmeter webhooks retry ${e.id}\` resends the given-up ones` : ''}`,
  );

/**
 * Deliveries nobody attempted for longer than their sender's overdue rule (two of its
 * intervals plus five minutes): the sender runs (or its own finding says it does not) but
 * sends none of them — it defers what it has no time for, run after run, or its claims
 * skip them.
 */
function unattemptedDeliveriesAttention({
  generated_at: now,
  alert_deliveries: alerts,
  webhook_deliveries: webhooks,
}: AttentionInputs) {
  const notSending = (
    waiting: { unattempted: number; oldest_unattempted_at: string | null },
    sender: 'deliver-alerts' | 'deliver-webhooks',
    noun: [string, string],
    byHand: string,
    remedy = '',
  ) => {
    const found = waitingTooLong(
      now,
      waiting,
      sender,
      `${plural(waiting.unattempted, ...noun)} never attempted`,
    );
    return (
      found &&
      `${found}: ${sender} is not sending them (its latest run's summary says how many it deferred)${remedy}; \`${byHand}\` sends them now`
    );
  };
  return [
    notSending(
      alerts,
      'deliver-alerts',
      ['alert delivery', 'alert deliveries'],
      'flowmeter alerts deliver',
    ),
    notSending(
      webhooks,
      'deliver-webhooks',
      ['webhook delivery', 'webhook deliveries'],
      'flowmeter webhooks deliver',
      ': when it defers them for want of time, raise WEBHOOK_CONCURRENCY (docs/webhooks.md "Throughput")',
    ),
  ];
}

/**
 * This project's scheduled functions that stopped running or keep failing, each once. A
 * function whose latest run started longer ago than two of its intervals (plus five minutes)
 * is overdue: Netlify no longer runs it (not deployed, disabled, or the site's functions
 * failing to start), which no run can record. A function that never ran is not named: a new
 * deployment has no history to tell "not yet" from "never". Of the latest runs, one failure
 * is enough: a function that fails every hour must not wait for a second to be noticed.
 */
function scheduledAttention({
  generated_at: now,
  scheduled_functions: functions,
}: AttentionInputs) {
  return functions.flatMap((f) => {
    if (!isScheduledFunction(f.function_name)) return [];
    const name = f.function_name;
    const { byHand } = SCHEDULED_FUNCTIONS[name];
    const findings: string[] = [];
    if (isOverdue(name, f.last_started_at, now)) {
      findings.push(
        `${name} has not run for ${formatDistanceStrict(f.last_started_at, now)} (it is scheduled ${scheduleInWords(name)}): check that the site's scheduled functions are deployed and enabled in Netlify and see its function log; \`${byHand}\` does its work now`,
      );
    }
    if (f.failures_since_success > 0) {
      findings.push(
        `${name} failed ${plural(f.failures_since_success, 'time')} since its last success${f.last_error ? ` (${f.last_error.slice(0, 120)})` : ''}`,
      );
    }
    return findings;
  });
}

/**
 * What needs a person: scheduled functions overdue or failing (above), failing sources,
 * billing's findings, alerts given up on, failing webhook endpoints, and deliveries nobody
 * attempts.
 */
export function needsAttention(status: AttentionInputs): string[] {
  return [
    ...scheduledAttention(status),
    status.sources.failing > 0 && `${plural(status.sources.failing, 'source')} failing`,
    status.sources.stalled > 0 &&
      `${plural(status.sources.stalled, 'enabled source')} not collected for 30 minutes or more, without an error: check that collect-usage runs (its latest run above) and that the sources are due (\`flowmeter sources list\`); \`flowmeter collect\` collects them now`,
    ...stripeAttention(status),
    status.alert_deliveries.given_up > 0 &&
      `${plural(status.alert_deliveries.given_up, 'alert delivery', 'alert deliveries')} given up`,
    ...webhookAttention(status),
    ...unattemptedDeliveriesAttention(status),
  ].filter((x): x is string => typeof x === 'string');
}
