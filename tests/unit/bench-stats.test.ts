import { setTimeout } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { measure, measureAtRate, medianOf, summarize } from '../../bench/stats.ts';

/** A task that records which calls ran and how many ran at once. */
function tracked(hold: (i: number) => Promise<void> = async () => {}) {
  const seen: number[] = [];
  let running = 0;
  let most = 0;
  const task = async (i: number) => {
    running++;
    most = Math.max(most, running);
    seen.push(i);
    await hold(i);
    running--;
  };
  return { task, seen, mostInFlight: () => most };
}

describe('measure (closed loop)', () => {
  it('runs every call once with exactly the given concurrency', async () => {
    const t = tracked(() => setTimeout(1));
    const series = await measure('closed', 4, 20, t.task);
    expect([...t.seen].sort((a, b) => a - b)).toEqual([...Array(20).keys()]);
    expect(t.mostInFlight()).toBe(4);
    expect(series).toMatchObject({ name: 'closed', concurrency: 4, requests: 20 });
  });
});

describe('measureAtRate (open loop)', () => {
  it('runs every call once and never more than the cap at a time', async () => {
    const t = tracked(() => setTimeout(2));
    const series = await measureAtRate(5000, 'open', 3, 30, t.task);
    expect([...t.seen].sort((a, b) => a - b)).toEqual([...Array(30).keys()]);
    expect(t.mostInFlight()).toBeLessThanOrEqual(3);
    expect(series).toMatchObject({
      name: 'open',
      concurrency: 3,
      requests: 30,
      offeredPerSecond: 5000,
    });
  });

  it('rejects with the first failure, once every call is sent, without an unhandled rejection', async () => {
    // The first call fails while later ones are still waiting to be sent.
    const task = async (i: number) => {
      if (i === 0) throw new Error('503 from the handler');
      await setTimeout(1);
    };
    await expect(measureAtRate(500, 'failing', 2, 10, task)).rejects.toThrow(
      '503 from the handler',
    );
  });

  it('counts a stall against every call it delays, from when each was due', async () => {
    // One call at a time, all due at once: the first holds the only slot, so each of the
    // others waits at least as long as it held it, and the median shows that wait.
    let held = 0;
    const t = tracked(async (i) => {
      if (i !== 0) return;
      const from = performance.now();
      await setTimeout(30);
      held = performance.now() - from;
    });
    const series = await measureAtRate(1_000_000, 'stalled', 1, 10, t.task);
    expect(held).toBeGreaterThan(0);
    expect(series.p50).toBeGreaterThanOrEqual(held);
  });
});

describe('medianOf', () => {
  it('keeps the median of each statistic across runs, and the CPU split', async () => {
    const runs = [
      { ...summarize('s', 1, [1, 2, 3], 1000), cpuPerRequest: { client: 3, rpc: 1, postgres: 9 } },
      { ...summarize('s', 1, [7, 8, 9], 1000), cpuPerRequest: { client: 1, rpc: 2, postgres: 8 } },
      { ...summarize('s', 1, [4, 5, 6], 1000), cpuPerRequest: { client: 2, rpc: 3, postgres: 7 } },
    ];
    let next = 0;
    const median = await medianOf(3, async () => runs[next++] as (typeof runs)[number]);
    expect(median).toMatchObject({
      name: 's',
      p50: 5,
      mean: 5,
      cpuPerRequest: { client: 2, rpc: 2, postgres: 8 },
    });
  });
});
