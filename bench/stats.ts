import { setTimeout } from 'node:timers/promises';
import pLimit from 'p-limit';
import { type CpuSample, cpuDelta } from './cpu.ts';

/** Latency statistics of one measured series (milliseconds). */
export interface Series {
  name: string;
  concurrency: number;
  requests: number;
  p50: number;
  p99: number;
  mean: number;
  perSecond: number;
  /** CPU milliseconds per request by party, where the machine can tell (see cpu.ts). */
  cpuPerRequest?: CpuSample;
  /** Open-loop series only (measureAtRate): the rate requests were sent at. */
  offeredPerSecond?: number;
}

export function summarize(
  name: string,
  concurrency: number,
  samples: number[],
  wallMs: number,
): Series {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  return {
    name,
    concurrency,
    requests: samples.length,
    p50: at(0.5),
    p99: at(0.99),
    mean: samples.reduce((a, b) => a + b, 0) / samples.length,
    perSecond: (samples.length / wallMs) * 1000,
  };
}

/** Runs `load`, then adds the CPU each party spent per request when a probe is given. */
async function withCpu(
  total: number,
  probe: (() => CpuSample) | null | undefined,
  load: () => Promise<Series>,
): Promise<Series> {
  const before = probe?.();
  const series = await load();
  const cpuPerRequest = cpuDelta(before, probe?.(), total);
  if (cpuPerRequest) series.cpuPerRequest = cpuPerRequest;
  return series;
}

/**
 * Closed-loop load: runs `task` `total` times with `concurrency` in flight, each starting
 * as another ends; returns per-call latencies, and the CPU each party spent per call when
 * a probe is given.
 */
export function measure(
  name: string,
  concurrency: number,
  total: number,
  task: (i: number) => Promise<unknown>,
  probe?: (() => CpuSample) | null,
): Promise<Series> {
  return withCpu(total, probe, async () => {
    const samples: number[] = [];
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < total) {
          const i = next++;
          const t0 = performance.now();
          await task(i);
          samples.push(performance.now() - t0);
        }
      }),
    );
    return summarize(name, concurrency, samples, performance.now() - started);
  });
}

/**
 * Open-loop load, with measure's arguments after `rate`: request i is due at start + i ÷
 * `rate`, whatever the earlier ones are doing, with at most `maxInFlight` (measure's
 * concurrency) in flight (a due request waits for a free slot). Each latency runs from when
 * its request was due, not from when it was sent, so a stall counts against every request
 * it delays (no coordinated omission). `perSecond` below `rate` means the path could not
 * keep up.
 */
export function measureAtRate(
  rate: number,
  ...[name, maxInFlight, total, task, probe]: Parameters<typeof measure>
): Promise<Series> {
  return withCpu(total, probe, async () => {
    const inFlight = pLimit(maxInFlight);
    const samples: number[] = [];
    const calls: Promise<void>[] = [];
    const started = performance.now();
    const dueAt = (i: number) => started + (i * 1000) / rate;
    for (let sent = 0; sent < total; ) {
      // Timers fire late by a millisecond or more: send everything due by now.
      for (; sent < total && dueAt(sent) <= performance.now(); sent++) {
        const i = sent;
        const call = inFlight(async () => {
          await task(i);
          samples.push(performance.now() - dueAt(i));
        });
        // Awaited below, after the last send: a failure meanwhile must not crash the
        // process as unhandled (the bench's finally stops the stack).
        call.catch(() => {});
        calls.push(call);
      }
      if (sent < total) await setTimeout(Math.max(0, dueAt(sent) - performance.now()));
    }
    await Promise.all(calls);
    return {
      ...summarize(name, maxInFlight, samples, performance.now() - started),
      offeredPerSecond: rate,
    };
  });
}

/**
 * The median of each statistic over `repeat` runs of `run`: on a small shared machine a
 * burst of outside load in one run moves its p99 a lot.
 */
export async function medianOf(repeat: number, run: () => Promise<Series>): Promise<Series> {
  const runs: Series[] = [];
  for (let r = 0; r < repeat; r++) runs.push(await run());
  const median = (pick: (s: Series) => number | undefined) => {
    const values = runs.map(pick).filter((v): v is number => v !== undefined);
    return values.sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
  };
  const first = runs[0] as Series;
  const cpu = first.cpuPerRequest
    ? {
        cpuPerRequest: {
          client: median((s) => s.cpuPerRequest?.client),
          rpc: median((s) => s.cpuPerRequest?.rpc),
          postgres: median((s) => s.cpuPerRequest?.postgres),
        },
      }
    : {};
  return {
    ...first,
    p50: median((s) => s.p50),
    p99: median((s) => s.p99),
    mean: median((s) => s.mean),
    perSecond: median((s) => s.perSecond),
    ...cpu,
  };
}

/** measure, `repeat` times, keeping the median of each statistic. */
export const measureMedian = (repeat: number, ...args: Parameters<typeof measure>) =>
  medianOf(repeat, () => measure(...args));

export const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : '—');
