import { describe, expect, it } from 'vitest';
import { type GcProfile, heapUse } from '../../bench/heap.ts';

const MiB = 1024 * 1024;

/** A heap state as GCProfiler reports it, reduced to the figures heapUse reads. */
function state(used: number, total: number, oldSpace: number) {
  return {
    heapStatistics: { usedHeapSize: used * MiB, totalHeapSize: total * MiB },
    heapSpaceStatistics: [
      { spaceName: 'new_space', spaceUsedSize: 8 * MiB },
      { spaceName: 'old_space', spaceUsedSize: oldSpace * MiB },
    ],
  };
}

const gc = (gcType: string, before: ReturnType<typeof state>, after: ReturnType<typeof state>) => ({
  gcType,
  cost: 1,
  beforeGC: before,
  afterGC: after,
});

const profile = (...statistics: ReturnType<typeof gc>[]) =>
  ({ version: 1, startTime: 0, endTime: 1, statistics }) as unknown as GcProfile;

describe('heapUse', () => {
  it('counts what scavenges move into the old space, per 1,000 executions', () => {
    const use = heapUse(
      profile(
        gc('Scavenge', state(30, 40, 20), state(22, 40, 21)),
        gc('Scavenge', state(31, 40, 21), state(23, 40, 23)),
      ),
      2000,
    );
    expect(use.promotedKiBPer1000).toBe(1.5 * 1024);
    expect(use.fullCollections).toBe(0);
    expect(use.liveAfterFullMiB).toBeNull();
    expect(use.peakHeapMiB).toBe(40);
  });

  it('reports the heap in use after each full collection, which does not count as promoted', () => {
    const use = heapUse(
      profile(
        gc('Scavenge', state(50, 90, 40), state(42, 90, 41)),
        gc('MarkSweepCompact', state(100, 140, 90), state(25, 120, 17)),
        gc('Scavenge', state(40, 120, 17), state(32, 120, 18)),
        gc('MarkSweepCompact', state(98, 130, 88), state(28, 110, 20)),
      ),
      1000,
    );
    expect(use.fullCollections).toBe(2);
    expect(use.liveAfterFullMiB).toEqual({ min: 25, max: 28 });
    expect(use.promotedKiBPer1000).toBe(2 * 1024);
    expect(use.peakHeapMiB).toBe(140);
  });

  it('reads no profile as no collections', () => {
    expect(heapUse(undefined, 0)).toEqual({
      promotedKiBPer1000: 0,
      fullCollections: 0,
      liveAfterFullMiB: null,
      peakHeapMiB: 0,
    });
  });
});
