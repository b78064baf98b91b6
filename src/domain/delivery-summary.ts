/** How one attempt at a claimed delivery (an alert's or a webhook's) ended. */
export type DeliveryOutcome = 'delivered' | 'failed' | 'gave_up';

/** What a delivery run did with the deliveries it claimed. */
export interface DeliverySummary {
  claimed: number;
  delivered: number;
  /** Failed this time, retried later with backoff. */
  failed: number;
  /** Failed for the last allowed time: no further attempt. */
  gaveUp: number;
}

export function summarizeDeliveries(claimed: number, outcomes: DeliveryOutcome[]): DeliverySummary {
  return {
    claimed,
    delivered: outcomes.filter((o) => o === 'delivered').length,
    failed: outcomes.filter((o) => o === 'failed').length,
    gaveUp: outcomes.filter((o) => o === 'gave_up').length,
  };
}

/**
 * Claims and sends batches until a claim comes back empty or `nextBatch` answers that no
 * further batch fits; the summary adds up every batch.
 */
export async function drainDeliveries(
  nextBatch: () => Promise<DeliverySummary> | undefined,
): Promise<DeliverySummary> {
  const total: DeliverySummary = { claimed: 0, delivered: 0, failed: 0, gaveUp: 0 };
  for (;;) {
    const sending = nextBatch();
    if (sending === undefined) return total;
    const batch = await sending;
    total.claimed += batch.claimed;
    total.delivered += batch.delivered;
    total.failed += batch.failed;
    total.gaveUp += batch.gaveUp;
    if (batch.claimed === 0) return total;
  }
}
