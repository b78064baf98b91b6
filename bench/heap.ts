import { GCProfiler } from 'node:v8';

/**
 * What the heap did over a series, from V8's own account of each collection: how much
 * survived the young generation into the old one per 1,000 executions (what makes the old
 * generation grow between full collections), the heap in use after each full collection
 * (what the process really holds), and the most heap it had taken from the system. Peak
 * RSS alone cannot tell memory that is kept from garbage V8 has not collected yet.
 */
export interface HeapUse {
  promotedKiBPer1000: number;
  fullCollections: number;
  liveAfterFullMiB: { min: number; max: number } | null;
  peakHeapMiB: number;
}

export type GcProfile = NonNullable<ReturnType<GCProfiler['stop']>>;
type HeapState = GcProfile['statistics'][number]['beforeGC'];

const MiB = 1024 * 1024;
const oldSpaceUsed = (state: HeapState) =>
  state.heapSpaceStatistics.find((space) => space.spaceName === 'old_space')?.spaceUsedSize ?? 0;

export function heapUse(profile: GcProfile | undefined, executions: number): HeapUse {
  let promoted = 0;
  let peak = 0;
  const live: number[] = [];
  for (const gc of profile?.statistics ?? []) {
    peak = Math.max(peak, gc.beforeGC.heapStatistics.totalHeapSize);
    if (gc.gcType === 'MarkSweepCompact') {
      live.push(gc.afterGC.heapStatistics.usedHeapSize / MiB);
    } else {
      // A young-generation collection moves survivors into the old space, nothing else.
      promoted += Math.max(0, oldSpaceUsed(gc.afterGC) - oldSpaceUsed(gc.beforeGC));
    }
  }
  return {
    promotedKiBPer1000: executions > 0 ? promoted / 1024 / (executions / 1000) : 0,
    fullCollections: live.length,
    liveAfterFullMiB: live.length ? { min: Math.min(...live), max: Math.max(...live) } : null,
    peakHeapMiB: peak / MiB,
  };
}

/** Runs `work` under V8's GC profiler and returns its result with the heap's account. */
export async function profiled<T>(
  work: () => Promise<T>,
): Promise<{ value: T; profile: GcProfile | undefined }> {
  const profiler = new GCProfiler();
  profiler.start();
  let value: T;
  try {
    value = await work();
  } catch (error) {
    profiler.stop();
    throw error;
  }
  return { value, profile: profiler.stop() };
}
