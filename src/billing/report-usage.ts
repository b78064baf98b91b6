import pLimit from 'p-limit';
import pThrottle from 'p-throttle';
import type Stripe from 'stripe';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { callFailed } from '../db/rpc-result.ts';
import { ok, type Result } from '../domain/result.ts';
import { answerBeforeCut } from '../domain/unless-cut.ts';
import type { Logger } from '../observability/logger.ts';
import {
  refusedByOpenBreaker,
  stripeCircuitBreaker,
  throughBreaker,
} from '../stripe/circuit-breaker.ts';
import { retryAfterMs, type StripeFailureKind, stripeFailureKind } from '../stripe/errors.ts';
import { heldForReview, pastReplayWindow } from '../stripe/replay-window.ts';
import { lateness, lateWithUnknownOutcome } from './lateness.ts';
import { type CorrectionsSummary, sendCorrections } from './send-corrections.ts';

export type MeterReport = Database['public']['Tables']['meter_reports']['Row'];

export interface ReporterSettings {
  /** Stop starting new sends this long after the run began. */
  budgetMs: number;
  /** Stripe meter events per second at most (live mode ~1,000; test mode far lower). */
  ratePerSecond: number;
  concurrency: number;
  maxRows: number;
  /** Stripe finalizes an invoice this long after its period ends (default 1 h). */
  finalizationGraceMinutes: number;
  /**
   * Sends still unanswered this long (real time) after the run began are no longer waited
   * for, so that the run can still record them and itself before the platform stops it (two
   * database deadlines before a scheduled function's 30 s). Each is recorded as failed with
   * its outcome unknown (UNANSWERED_AT_CUT) and stays pending, so status counts it among the
   * failing ones when it keeps happening; Stripe keeps the identifier of one that landed, so
   * the next run's resend is recognised and recorded as sent. Unset (the CLI): every send is
   * awaited.
   */
  cutAfterMs?: number;
}

export interface ReporterSummary {
  dryRun: boolean;
  claimed: number;
  sent: number;
  failed: number;
  late: number;
  /**
   * Not sent again: an attempt's answer was lost longer ago than Stripe surely de-duplicates
   * the identifier (STRIPE_REPLAY_WINDOW_MS, src/stripe/replay-window.ts), so a person checks Stripe first.
   */
  review: number;
  /** Not attempted: the budget ran out, the circuit breaker was open or the key was refused. */
  deferred: number;
  /** 429 answers waited out (Retry-After) and retried within the run. */
  rateLimited: number;
  /**
   * Why sends stopped before the last report: Stripe refused the key (`auth`), or the
   * circuit breaker opened, Stripe failing to answer (`unavailable`). Every other send would
   * fail the same way, so the rest wait for the next run, unattempted.
   */
  stoppedBy: 'auth' | 'unavailable' | null;
  /** Pending corrections, sent before the reports; null in a dry run or when they could not be read. */
  corrections: CorrectionsSummary | null;
  wouldSend: Array<
    Pick<
      MeterReport,
      'identifier' | 'stripe_customer_id' | 'event_name' | 'value' | 'event_timestamp'
    >
  >;
}

/** How long to wait after a 429 that names no Retry-After. */
const RATE_LIMIT_FALLBACK_MS = 1000;

/** Why a send still unanswered at the run's cut failed (its outcome is not known). */
export const UNANSWERED_AT_CUT =
  'Stripe had not answered when the run had to end (the event may have landed: the next run sends it again with the same identifier)';

/**
 * The part of a run's budget pending corrections may take, before the reports have the
 * rest: sent after the reports, they got only what a report backlog left, which can be
 * nothing run after run while Stripe bills the uncorrected amount. A run without pending
 * corrections gives the reports its whole budget.
 */
const CORRECTIONS_SHARE = 0.25;

/** Sends of one report per run, counting those Stripe answered with 429. */
const MAX_ATTEMPTS_PER_RUN = 5;

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface RunReporterInput {
  db: Db;
  /** null: dry run — compute and log what would be sent, send nothing. */
  stripe: Stripe | null;
  settings: ReporterSettings;
  log: Logger;
  /** Only these tenants (an operator's targeted run); all by default. */
  tenantIds?: string[];
  /** The run's clock: its deadline, and whether an invoice is final, are read from it. */
  now?: () => number;
  /** Waits out a rate limit; tests pass one that moves their clock instead of sleeping. */
  sleep?: (ms: number) => Promise<void>;
  /** Progress for a person watching: how many reports were claimed, then each one recorded. */
  onProgress?: (event: { type: 'claimed'; reports: number } | { type: 'recorded' }) => void;
}

/**
 * One reporter run. Claims every unreported delta into the ledger (one transaction, before
 * anything is sent), then sends pending reports as Billing Meter events — identifier and
 * value from the ledger, so a retry re-sends exactly the same event — within Stripe's rate
 * limit, behind a circuit breaker, until the budget. A 429 pauses every send for as long as
 * Stripe asks (Retry-After) and retries within the budget; a report whose invoice became
 * final while it waited is recorded as late, not sent; a refused key stops the run. One
 * tenant's failure never stops the others; what is not sent stays pending for the next run.
 * Pending corrections (flowmeter adjust, reconcile --repair) are sent first, within a share
 * of the budget (CORRECTIONS_SHARE).
 */
export async function runReporter(input: RunReporterInput): Promise<Result<ReporterSummary>> {
  const { db, stripe, settings, log } = input;
  const now = input.now ?? Date.now;
  const sleep = input.sleep ?? realSleep;
  const startedAt = now();
  const deadline = startedAt + settings.budgetMs;
  const cut =
    settings.cutAfterMs === undefined
      ? undefined
      : AbortSignal.timeout(Math.max(0, settings.cutAfterMs));

  const claimed = await db.rpc('claim_meter_deltas', {
    max_rows: settings.maxRows,
    finalization_grace_minutes: settings.finalizationGraceMinutes,
    ...(input.tenantIds ? { tenant_ids: input.tenantIds } : {}),
  });
  if (claimed.error) return callFailed('claim_meter_deltas', claimed);
  const pending = claimed.data ?? [];
  input.onProgress?.({ type: 'claimed', reports: pending.length });
  const summary: ReporterSummary = {
    dryRun: stripe === null,
    claimed: pending.length,
    sent: 0,
    failed: 0,
    late: 0,
    review: 0,
    deferred: 0,
    rateLimited: 0,
    stoppedBy: null,
    corrections: null,
    wouldSend: [],
  };

  if (!stripe) {
    summary.wouldSend = pending.map((r) => ({
      identifier: r.identifier,
      stripe_customer_id: r.stripe_customer_id,
      event_name: r.event_name,
      value: r.value,
      event_timestamp: r.event_timestamp,
    }));
    summary.deferred = pending.length;
    log.info(
      { reports: summary.wouldSend },
      'dry run (no STRIPE_SECRET_KEY): these meter events would be sent',
    );
    return ok(summary);
  }

  // One breaker for the run: Stripe failing the corrections stops the reports' sends too.
  const breaker = stripeCircuitBreaker();
  const corrections = await sendCorrections({
    db,
    stripe,
    log,
    breaker,
    finalizationGraceMinutes: settings.finalizationGraceMinutes,
    until: startedAt + settings.budgetMs * CORRECTIONS_SHARE,
    ...(cut ? { cut } : {}),
    now,
    ...(input.tenantIds ? { tenantIds: input.tenantIds } : {}),
  });
  if (corrections.ok) summary.corrections = corrections.value;
  else log.error({ error: corrections.error.message }, 'corrections not sent');

  const record = async (
    report: MeterReport,
    outcome: 'sent' | 'late' | 'failed' | 'review',
    failure?: { message: string; kind?: StripeFailureKind },
  ) => {
    const { error: recordError } = await db.rpc('record_meter_report', {
      id: report.id,
      outcome,
      ...(failure ? { error: failure.message } : {}),
      ...(failure?.kind ? { error_kind: failure.kind } : {}),
    });
    if (recordError)
      log.error(
        { report: report.identifier, error: recordError.message },
        'could not record the outcome',
      );
    summary[outcome] += 1;
    input.onProgress?.({ type: 'recorded' });
  };

  const send = (report: MeterReport) =>
    stripe.billing.meterEvents.create(
      {
        event_name: report.event_name,
        identifier: report.identifier,
        timestamp: Math.floor(Date.parse(report.event_timestamp) / 1000),
        payload: { stripe_customer_id: report.stripe_customer_id, value: String(report.value) },
      },
      { idempotencyKey: report.identifier },
    );
  // Evenly spaced (strict) at 95 % of the limit: network jitter can bunch requests, and a
  // window over Stripe's limit costs a 429.
  const throttled = pThrottle({
    limit: Math.max(1, Math.floor(settings.ratePerSecond * 0.95)),
    interval: 1000,
    strict: true,
  })(send);
  const limit = pLimit(settings.concurrency);
  // A 429 pauses every send of the run, not only the one that got it.
  let pausedUntil = 0;

  const deliver = async (report: MeterReport) => {
    for (let attempt = 1; ; attempt += 1) {
      if (pausedUntil > now()) await sleep(pausedUntil - now());
      if (summary.stoppedBy || now() >= deadline || breaker.opened || cut?.aborted) {
        if (breaker.opened) summary.stoppedBy ??= 'unavailable';
        summary.deferred += 1;
        return;
      }
      const late = lateness(report, now(), settings.finalizationGraceMinutes);
      if (late) {
        const message = report.unknown_outcome
          ? lateWithUnknownOutcome(late, report.identifier)
          : late;
        return record(report, 'late', { message });
      }
      if (pastReplayWindow(report.unanswered_since, now())) {
        return record(report, 'review', {
          message: heldForReview(report.identifier, `flowmeter reports resolve ${report.id}`),
        });
      }
      try {
        // Unanswered at the cut: failed below as unavailable, like any lost answer.
        await answerBeforeCut(
          throughBreaker(breaker, () => throttled(report)),
          cut,
          UNANSWERED_AT_CUT,
        );
        return record(report, 'sent');
      } catch (sendError) {
        if (refusedByOpenBreaker(sendError)) {
          summary.stoppedBy ??= 'unavailable';
          summary.deferred += 1;
          return;
        }
        const kind = stripeFailureKind(sendError);
        // The identifier is the delta's own: Stripe holding it means an earlier attempt landed.
        if (kind === 'duplicate') return record(report, 'sent');
        if (kind === 'rate_limited' && attempt < MAX_ATTEMPTS_PER_RUN) {
          const wait = retryAfterMs(sendError, now()) ?? RATE_LIMIT_FALLBACK_MS;
          if (now() + wait < deadline) {
            summary.rateLimited += 1;
            pausedUntil = Math.max(pausedUntil, now() + wait);
            continue;
          }
        }
        if (kind === 'auth') summary.stoppedBy = 'auth';
        const message = sendError instanceof Error ? sendError.message : String(sendError);
        log.warn(
          { report: report.identifier, tenant_id: report.tenant_id, kind, error: message },
          'meter event not sent',
        );
        return record(report, 'failed', { message, kind });
      }
    }
  };

  await Promise.all(pending.map((report) => limit(() => deliver(report))));
  breaker.shutdown();
  log.info({ ...summary, wouldSend: undefined }, 'reporter run finished');
  return ok(summary);
}
