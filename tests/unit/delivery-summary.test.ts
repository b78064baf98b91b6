import { describe, expect, it } from 'vitest';
import {
  type DeliverySummary,
  drainDeliveries,
  summarizeDeliveries,
} from '../../src/domain/delivery-summary.ts';
import { fail, ok } from '../../src/domain/result.ts';

const summary = (claimed: number, delivered = claimed): DeliverySummary => ({
  claimed,
  delivered,
  failed: claimed - delivered,
  gaveUp: 0,
  deferred: 0,
});
const batch = (claimed: number, delivered = claimed) => ok(summary(claimed, delivered));

describe('delivery summaries', () => {
  it('count each outcome of the claimed deliveries', () => {
    expect(
      summarizeDeliveries(5, ['delivered', 'failed', 'gave_up', 'delivered', 'deferred']),
    ).toEqual({ claimed: 5, delivered: 2, failed: 1, gaveUp: 1, deferred: 1 });
  });

  it('drain until a claim comes back empty, adding up every batch', async () => {
    const batches = [batch(3, 2), batch(1), batch(0)];
    let calls = 0;
    const total = await drainDeliveries(async () => batches[calls++] ?? batch(9));
    expect(calls).toBe(3);
    expect(total).toEqual(ok({ claimed: 4, delivered: 3, failed: 1, gaveUp: 0, deferred: 0 }));
  });

  it('drain stops after a batch that had no time left to send all it claimed', async () => {
    let calls = 0;
    const total = await drainDeliveries(async () => {
      calls += 1;
      return ok({ claimed: 3, delivered: 1, failed: 0, gaveUp: 0, deferred: 2 });
    });
    expect(calls).toBe(1);
    expect(total).toEqual(ok({ claimed: 3, delivered: 1, failed: 0, gaveUp: 0, deferred: 2 }));
  });

  it('drain stops before a batch that does not fit', async () => {
    let calls = 0;
    const total = await drainDeliveries(() =>
      calls++ < 2 ? Promise.resolve(batch(2)) : undefined,
    );
    expect(calls).toBe(3);
    expect(total).toEqual(ok({ claimed: 4, delivered: 4, failed: 0, gaveUp: 0, deferred: 0 }));
  });

  it('drain stops at a batch whose claim failed, with its failure', async () => {
    const batches = [batch(2), fail('unavailable', 'claim failed: no answer'), batch(0)];
    let calls = 0;
    const total = await drainDeliveries(async () => batches[calls++] ?? batch(9));
    expect(calls).toBe(2);
    expect(total).toEqual(fail('unavailable', 'claim failed: no answer'));
  });
});
