import type Stripe from 'stripe';
import type { Db } from '../db/client.ts';
import { callFailed } from '../db/rpc-result.ts';
import { ok, type Result } from '../domain/result.ts';
import { answerBeforeCut } from '../domain/unless-cut.ts';
import { plural } from '../domain/words.ts';
import type { Logger } from '../observability/logger.ts';
import {
  type StripeCircuitBreaker,
  stripeCircuitBreaker,
  throughBreaker,
} from '../stripe/circuit-breaker.ts';
import { stripeFailureKind } from '../stripe/errors.ts';
import { heldForReview, pastReplayWindow } from '../stripe/replay-window.ts';
import { lateness } from './lateness.ts';
import type { Correction } from './record-correction.ts';

export interface CorrectionsSummary {
  claimed: number;
  sent: number;
  /** Stripe refused a cancellation (past its 24 hours, or the invoice became final): credited instead. */
  credited: number;
  failed: number;
  late: number;
  review: number;
  /**
   * Not attempted, left for the next run: the run's share of its budget ran out, the run was
   * cut, or it stopped (stoppedBy).
   */
  deferred: number;
  /**
   * Why the run stopped before the last correction: Stripe refused the key (`auth`), or the
   * circuit breaker opened, Stripe failing to answer (`unavailable`). Every other correction
   * would fail the same way and count an attempt against itself, so the rest wait for the
   * next run, unattempted.
   */
  stoppedBy: 'auth' | 'unavailable' | null;
  /** Each claimed correction as its last recorded step left it. */
  settled: Correction[];
}

export interface SendCorrectionsInput {
  db: Db;
  stripe: Stripe;
  log: Logger;
  /** Only these corrections (the one an operator just recorded); every pending one by default. */
  ids?: number[];
  /** Only these tenants' corrections (an operator's targeted run). */
  tenantIds?: string[];
  finalizationGraceMinutes: number;
  /** How long a run holds what it claimed; an overlapping run leaves it alone meanwhile. */
  leaseSeconds?: number;
  /** Start no correction after this instant (the run's deadline); the rest waits for its lease to end. */
  until?: number;
  /**
   * The run's breaker for its calls to Stripe, when it makes others after these (the reports
   * of report-usage): an outage the corrections met then stops those too. Its own otherwise.
   */
  breaker?: StripeCircuitBreaker;
  /**
   * Once aborted (the run must end before the platform stops it), Stripe's answer to the step
   * in flight is no longer awaited: the step is recorded as failed with its outcome unknown,
   * its late answer by no one, and no further correction starts. The next run takes it again
   * and replays the step by its idempotency key.
   */
  cut?: AbortSignal;
  now?: () => number;
}

type Outcome = 'cancel_sent' | 'sent' | 'failed' | 'credit' | 'late' | 'review';

/** Why a step still unanswered at the run's cut failed (its outcome is not known). */
const UNANSWERED_AT_CUT =
  'Stripe had not answered when the run had to end (the step may have landed: it is replayed with the same idempotency key)';

/** The marker a credit carries at Stripe, so a retry finds one that landed unanswered. */
const CREDIT_METADATA_KEY = 'flowmeter_correction';

const errorMessage = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** A refusal of the request itself (not the key, not a rate limit, not an outage). */
const refused = (error: unknown) => stripeFailureKind(error) === 'refused';

async function findCredit(stripe: Stripe, correction: Correction) {
  for await (const transaction of stripe.customers.listBalanceTransactions(
    correction.stripe_customer_id,
    { limit: 100 },
  )) {
    if (transaction.metadata?.[CREDIT_METADATA_KEY] === correction.identifier) return transaction;
  }
  return undefined;
}

/**
 * Sends pending corrections, each step with an idempotency key of its own: a cancellation
 * (Meter Event Adjustment) and then the remainder as a meter event, a new meter event, or a
 * customer credit. Each step's outcome is recorded before the next is taken, so a crash at
 * any point resumes where Stripe's last recorded answer left off; a run holds what it
 * claimed, so two overlapping runs never send the same correction at once.
 */
export async function sendCorrections(
  input: SendCorrectionsInput,
): Promise<Result<CorrectionsSummary>> {
  const { db, stripe, log } = input;
  const now = input.now ?? Date.now;
  const claim = await db.rpc('claim_meter_corrections', {
    lease_seconds: input.leaseSeconds ?? 300,
    ...(input.ids ? { ids: input.ids } : {}),
    ...(input.tenantIds ? { tenant_ids: input.tenantIds } : {}),
  });
  if (claim.error) return callFailed('claim_meter_corrections', claim);
  const summary: CorrectionsSummary = {
    claimed: claim.data?.length ?? 0,
    sent: 0,
    credited: 0,
    failed: 0,
    late: 0,
    review: 0,
    deferred: 0,
    stoppedBy: null,
    settled: [],
  };
  const breaker = input.breaker ?? stripeCircuitBreaker();

  const record = async (
    correction: Correction,
    outcome: Outcome,
    detail: { error?: unknown; objectId?: string } = {},
  ): Promise<Correction | null> => {
    const { data, error: recordError } = await db.rpc('record_meter_correction_outcome', {
      id: correction.id,
      outcome,
      ...(detail.error === undefined ? {} : { error: errorMessage(detail.error) }),
      ...(outcome === 'failed' ? { error_kind: stripeFailureKind(detail.error) } : {}),
      ...(detail.objectId ? { stripe_object_id: detail.objectId } : {}),
    });
    if (recordError) {
      log.error(
        { correction: correction.identifier, outcome, error: recordError.message },
        'could not record the outcome of a correction',
      );
      return null;
    }
    return data as Correction | null;
  };

  // Stripe's answer through the breaker, unless the run's cut comes first: then the step
  // fails with its outcome unknown, recorded like any lost answer.
  const answerOf = <T>(call: () => Promise<T>) =>
    answerBeforeCut(throughBreaker(breaker, call), input.cut, UNANSWERED_AT_CUT);

  const failed = async (correction: Correction, sendError: unknown) => {
    log.warn(
      {
        correction: correction.identifier,
        tenant_id: correction.tenant_id,
        error: errorMessage(sendError),
      },
      'correction not sent',
    );
    summary.failed += 1;
    return record(correction, 'failed', { error: sendError });
  };

  const sendEvent = async (correction: Correction) => {
    const late = lateness(
      { period_end: correction.period_end, event_timestamp: correction.event_timestamp ?? '' },
      now(),
      input.finalizationGraceMinutes,
    );
    if (late) {
      summary.late += 1;
      return record(correction, 'late', { error: late });
    }
    if (correction.unknown_outcome && pastReplayWindow(correction.first_attempt_at, now())) {
      summary.review += 1;
      return record(correction, 'review', {
        error: heldForReview(
          correction.identifier,
          `flowmeter corrections resolve ${correction.id}`,
        ),
      });
    }
    try {
      await answerOf(() =>
        stripe.billing.meterEvents.create(
          {
            event_name: correction.event_name,
            identifier: correction.identifier,
            timestamp: Math.floor(Date.parse(correction.event_timestamp ?? '') / 1000),
            payload: {
              stripe_customer_id: correction.stripe_customer_id,
              value: String(correction.event_value),
            },
          },
          { idempotencyKey: correction.identifier },
        ),
      );
    } catch (sendError) {
      // The identifier is the correction's own: Stripe holding it means an earlier attempt landed.
      if (stripeFailureKind(sendError) !== 'duplicate') return failed(correction, sendError);
    }
    summary.sent += 1;
    return record(correction, 'sent');
  };

  const sendCancel = async (correction: Correction) => {
    const invoiceFinal =
      now() >= Date.parse(correction.period_end) + input.finalizationGraceMinutes * 60_000 - 60_000;
    if (invoiceFinal) {
      summary.credited += 1;
      return record(correction, 'credit', {
        error: `not cancelled: the invoice for the period ending ${correction.period_end} became final first; credited instead`,
      });
    }
    try {
      await answerOf(() =>
        stripe.billing.meterEventAdjustments.create(
          {
            event_name: correction.event_name,
            type: 'cancel',
            cancel: { identifier: correction.cancels_identifier ?? '' },
          },
          { idempotencyKey: `${correction.identifier}:cancel` },
        ),
      );
    } catch (sendError) {
      if (!refused(sendError)) return failed(correction, sendError);
      if (correction.unknown_outcome && pastReplayWindow(correction.first_attempt_at, now())) {
        summary.review += 1;
        return record(correction, 'review', {
          error: `Stripe refused the cancellation of ${correction.cancels_identifier} (${errorMessage(sendError)}), and an earlier attempt's answer was lost more than a day ago: check in Stripe whether the event was cancelled`,
        });
      }
      summary.credited += 1;
      return record(correction, 'credit', {
        error: `not cancelled (${errorMessage(sendError)}); credited instead`,
      });
    }
    return record(correction, 'cancel_sent');
  };

  const sendCredit = async (correction: Correction) => {
    try {
      // An attempt without an answer may have landed: look for it before crediting again.
      const landed = correction.unknown_outcome
        ? await answerOf(() => findCredit(stripe, correction))
        : undefined;
      const transaction =
        landed ??
        (await answerOf(() =>
          stripe.customers.createBalanceTransaction(
            correction.stripe_customer_id,
            {
              amount: -(correction.credit_amount ?? 0),
              currency: correction.currency ?? '',
              description:
                `flowmeter correction: ${plural(correction.delta, 'execution')}, ${correction.reason}`.slice(
                  0,
                  350,
                ),
              metadata: {
                [CREDIT_METADATA_KEY]: correction.identifier,
                flowmeter_tenant_id: correction.tenant_id,
                flowmeter_period_start: correction.period_start,
              },
            },
            { idempotencyKey: `${correction.identifier}:credit` },
          ),
        ));
      summary.sent += 1;
      return record(correction, 'sent', { objectId: transaction.id });
    } catch (sendError) {
      return failed(correction, sendError);
    }
  };

  const step = (correction: Correction) => {
    if (correction.method === 'credit') return sendCredit(correction);
    if (correction.method === 'cancel' && !correction.cancel_sent_at) return sendCancel(correction);
    return sendEvent(correction);
  };

  const ordered = [...(claim.data ?? [])].sort((a, b) => a.id - b.id);
  for (const first of ordered) {
    if (input.until !== undefined && now() >= input.until) break;
    // Stripe keeps failing: the rest would fail too, each counting an attempt against itself.
    // Sent one at a time, no step is in flight here: the failure that opened the breaker was
    // the previous correction's, recorded with its outcome unknown, and the next run replays
    // that step by its idempotency key.
    if (breaker.opened) {
      summary.stoppedBy = 'unavailable';
      break;
    }
    // At most three steps: a cancellation, then its remainder or the credit it became.
    let correction: Correction | null = first;
    for (let steps = 0; correction?.status === 'pending' && steps < 3; steps += 1) {
      correction = await step(correction);
      // A failed attempt waits for the next run.
      if (correction?.last_error_kind) break;
    }
    summary.settled.push(correction ?? first);
    if (correction?.last_error_kind === 'auth') {
      summary.stoppedBy = 'auth';
      break;
    }
    if (input.cut?.aborted) break;
  }
  if (!input.breaker) breaker.shutdown();
  summary.deferred = ordered.length - summary.settled.length;
  if (summary.stoppedBy === 'unavailable') {
    log.warn(
      { deferred: summary.deferred, failed: summary.failed },
      'Stripe kept failing: the remaining corrections wait for the next run, unattempted',
    );
  }
  log.info({ ...summary, settled: undefined }, 'corrections run finished');
  return ok(summary);
}
