import pLimit from 'p-limit';
import type { Logger } from '../observability/logger.ts';
import {
  type DeliveryOutcome,
  type DeliverySummary,
  summarizeDeliveries,
} from './delivery-summary.ts';
import { ok, type Result } from './result.ts';
import { retryUnanswered } from './retry-unanswered.ts';

/** What supabase-js answers for an RPC: `status` 0 when no answer came. */
interface RpcAnswer<T> {
  data: T | null;
  error: { message: string } | null;
  status: number;
}

/** How one attempt ended: error is null when the destination accepted the message. */
export interface Attempt {
  error: string | null;
  /** Logged with the outcome. */
  details?: Record<string, unknown>;
}

/** A delivery as its outbox's finish function leaves it; null when nothing changed. */
interface FinishedDelivery {
  status: string;
  next_attempt_at: string | null;
}

/** What every delivery run is given; each outbox adds its own. */
export interface DeliveryRunInput {
  log: Logger;
  /** Deliveries claimed by this run; the rest wait for the next. */
  maxRows?: number;
  /** Longer than the calling function may run, so a live run never loses its claims. */
  leaseSeconds?: number;
  /** Lanes sent at once. */
  concurrency?: number;
  /**
   * No send starts after this instant (epoch ms): a scheduled function's last moment to start
   * one and still record it and itself (sendStartBy). What is left of the claim is deferred
   * and handed back, due for the next run with its attempt not counted. Unset (the CLI):
   * every claimed one is sent.
   */
  startBy?: number;
}

/** How one delivery outbox (supabase/migrations/…_delivery_outbox.sql) is claimed and sent. */
export interface DeliveryOutbox<D, A extends Attempt, K> {
  /** Names the deliveries in log lines: `alert`, `webhook`. */
  noun: string;
  /** What a run is not told. */
  defaults: Required<Omit<DeliveryRunInput, 'log' | 'startBy'>>;
  /**
   * The claim function's answer as a Result (rpcResult, naming the call): its failure ends
   * the run as it is.
   */
  claim: (lease: { max_rows: number; lease_seconds: number }) => PromiseLike<Result<D[] | null>>;
  /** A lane's deliveries go one at a time, in claim order; without it each is its own lane. */
  laneOf?: (delivery: D) => unknown;
  /**
   * The delivery's primary key and the lease its claim returned: what the outbox's return
   * and finish functions take to find it.
   */
  key: (delivery: D) => K;
  /** What every log line about the delivery carries. */
  context: (delivery: D) => Record<string, unknown>;
  /** One attempt; never throws. */
  send: (delivery: D) => Promise<A>;
  /**
   * Hands back the keys of claimed deliveries the run had no time to attempt (the return
   * function): the attempt their claim counted is taken back and they are due at once.
   */
  giveBack: (keys: K[]) => PromiseLike<RpcAnswer<number>>;
  /** Records the outcome with the finish function; `outcome` is what every one takes. */
  finish: (
    key: K & { delivered: boolean; error?: string },
    attempt: A,
  ) => PromiseLike<RpcAnswer<FinishedDelivery>>;
}

function lanes<D>(claimed: D[], laneOf?: (delivery: D) => unknown): D[][] {
  if (!laneOf) return claimed.map((d) => [d]);
  const byLane = new Map<unknown, D[]>();
  for (const d of claimed) {
    const key = laneOf(d);
    const lane = byLane.get(key);
    if (lane) lane.push(d);
    else byLane.set(key, [d]);
  }
  return [...byLane.values()];
}

/** Further tries at recording an outcome (or a give-back) that got no answer, while the claim's lease lasts. */
const FINISH_RETRIES = 3;

async function deliverOne<D, A extends Attempt, K>(
  outbox: DeliveryOutbox<D, A, K>,
  parentLog: Logger,
  d: D,
  leaseEndsAt: number,
): Promise<DeliveryOutcome> {
  const log = parentLog.child(outbox.context(d));
  const attempt = await outbox.send(d);
  const delivered = attempt.error === null;
  // Retried: a sent delivery left unrecorded is sent again once its lease runs out, and a
  // Slack message cannot be taken back. Recording twice changes nothing (delivered is final,
  // a failure counts only while sending). Not past the lease: by then another run may send.
  const { data, error } = await retryUnanswered(
    () =>
      outbox.finish(
        {
          ...outbox.key(d),
          ...(attempt.error === null ? { delivered } : { delivered, error: attempt.error }),
        },
        attempt,
      ),
    { retries: FINISH_RETRIES, withinMs: leaseEndsAt - Date.now() },
  );
  if (error) {
    // The lease runs out and the delivery is sent again, with the same key: a repeat the
    // destination can drop, never a loss.
    log.error({ error: error.message, sent: delivered }, 'could not record the outcome');
  }
  if (delivered) {
    log.info({ ...attempt.details }, `${outbox.noun} delivered`);
    return 'delivered';
  }
  const gaveUp = data?.status === 'failed' && data.next_attempt_at === null;
  log[gaveUp ? 'error' : 'warn'](
    { error: attempt.error, ...attempt.details, next_attempt_at: data?.next_attempt_at ?? null },
    gaveUp ? `${outbox.noun} delivery given up` : `${outbox.noun} delivery failed; will retry`,
  );
  return gaveUp ? 'gave_up' : 'failed';
}

/**
 * Claims due deliveries under a lease, sends each and records its outcome (the SQL side
 * schedules retries and gives up). A failing lane never holds up the others. A claim that
 * fails is the run's failure, with the claim's code (`unavailable` when the database did not
 * answer) and its details, so each transport says what to check.
 */
export async function deliverClaimed<D, A extends Attempt, K>(
  input: DeliveryRunInput,
  outbox: DeliveryOutbox<D, A, K>,
): Promise<Result<DeliverySummary>> {
  const leaseSeconds = input.leaseSeconds ?? outbox.defaults.leaseSeconds;
  // Taken before the claim, so it never falls after the lease the database grants.
  const leaseEndsAt = Date.now() + leaseSeconds * 1000;
  const claim = await outbox.claim({
    max_rows: input.maxRows ?? outbox.defaults.maxRows,
    lease_seconds: leaseSeconds,
  });
  if (!claim.ok) return claim;
  const claimed = claim.value ?? [];
  const limit = pLimit(input.concurrency ?? outbox.defaults.concurrency);
  const deferred: D[] = [];
  const outcomes = await Promise.all(
    lanes(claimed, outbox.laneOf).map((lane) =>
      limit(async () => {
        const results: DeliveryOutcome[] = [];
        for (const d of lane) {
          if (input.startBy !== undefined && Date.now() >= input.startBy) {
            deferred.push(d);
            results.push('deferred');
          } else results.push(await deliverOne(outbox, input.log, d, leaseEndsAt));
        }
        return results;
      }),
    ),
  );
  if (deferred.length > 0) {
    // Retried while the lease lasts: the return matches each delivery's lease, so a repeat
    // after a lost answer changes nothing, not even another sender's later claim of it. Not
    // handed back (no answer): they wait for their lease, each attempt counted as before.
    const { error } = await retryUnanswered(() => outbox.giveBack(deferred.map(outbox.key)), {
      retries: FINISH_RETRIES,
      withinMs: leaseEndsAt - Date.now(),
    });
    if (error)
      input.log.error(
        { error: error.message },
        `could not hand back deferred ${outbox.noun} deliveries`,
      );
  }
  const summary = summarizeDeliveries(claimed.length, outcomes.flat());
  if (summary.claimed > 0) input.log.info({ ...summary }, `${outbox.noun} deliveries sent`);
  return ok(summary);
}
