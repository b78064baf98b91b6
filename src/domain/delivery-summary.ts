import { ok, type Result } from './result.ts';

/** How one attempt at a claimed delivery (an alert's or a webhook's) ended. */
export type DeliveryOutcome = 'delivered' | 'failed' | 'gave_up' | 'deferred';

/** What a delivery run did with the deliveries it claimed. */
export interface DeliverySummary {
  claimed: number;
  delivered: number;
  /** Failed this time, retried later with backoff. */
  failed: number;
  /** Failed for the last allowed time: no further attempt. */
  gaveUp: number;
  /** Claimed, not sent: the run's time to start sends ran out (sent once their lease ends). */
  deferred: number;
}

export function summarizeDeliveries(claimed: number, outcomes: DeliveryOutcome[]): DeliverySummary {
  return {
    claimed,
    delivered: outcomes.filter((o) => o === 'delivered').length,
    failed: outcomes.filter((o) => o === 'failed').length,
    gaveUp: outcomes.filter((o) => o === 'gave_up').length,
    deferred: outcomes.filter((o) => o === 'deferred').length,
  };
}

/**
 * Claims and sends batches until a claim comes back empty or `nextBatch` answers that no
 * further batch fits; the summary adds up every batch. A batch that fails (its claim did)
 * ends the drain with that failure; what earlier batches sent is recorded on their rows.
 */
export async function drainDeliveries(
  nextBatch: () => Promise<Result<DeliverySummary>> | undefined,
): Promise<Result<DeliverySummary>> {
  const total: DeliverySummary = { claimed: 0, delivered: 0, failed: 0, gaveUp: 0, deferred: 0 };
  for (;;) {
    const sending = nextBatch();
    if (sending === undefined) return ok(total);
    const answer = await sending;
    if (!answer.ok) return answer;
    const batch = answer.value;
    total.claimed += batch.claimed;
    total.delivered += batch.delivered;
    total.failed += batch.failed;
    total.gaveUp += batch.gaveUp;
    total.deferred += batch.deferred;
    // Nothing left, or no time left to send what the next claim would take.
    if (batch.claimed === 0 || batch.deferred > 0) return ok(total);
  }
}
