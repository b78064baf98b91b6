import type { CpuSample } from './cpu.ts';

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

/**
 * Runs `task` `total` times with `concurrency` in flight; returns per-call latencies, and
 * the CPU each party spent per call when a probe is given.
 */
export async function measure(
  name: string,
  concurrency: number,
  total: number,
  task: (i: number) => Promise<unknown>,
  probe?: (() => CpuSample) | null,
): Promise<Series> {
  const samples: number[] = [];
  let next = 0;
  const cpuBefore = probe?.();
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
  const series = summarize(name, concurrency, samples, performance.now() - started);
  const cpuAfter = probe?.();
  if (cpuBefore && cpuAfter) {
    series.cpuPerRequest = {
      client: (cpuAfter.client - cpuBefore.client) / total,
      rpc: (cpuAfter.rpc - cpuBefore.rpc) / total,
      postgres: (cpuAfter.postgres - cpuBefore.postgres) / total,
    };
  }
  return series;
}

/**
 * The median of each statistic over `repeat` runs: on a small shared machine a burst of
 * outside load in one run moves its p99 a lot.
 */
export async function measureMedian(
  repeat: number,
  ...args: Parameters<typeof measure>
): Promise<Series> {
  const [name, concurrency, total] = args;
  const runs: Series[] = [];
  for (let r = 0; r < repeat; r++) runs.push(await measure(...args));
  const median = (pick: (s: Series) => number | undefined) => {
    const values = runs.map(pick).filter((v): v is number => v !== undefined);
    return values.sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
  };
  const cpu = runs[0]?.cpuPerRequest
    ? {
        cpuPerRequest: {
          client: median((s) => s.cpuPerRequest?.client),
          rpc: median((s) => s.cpuPerRequest?.rpc),
          postgres: median((s) => s.cpuPerRequest?.postgres),
        },
      }
    : {};
  return {
    name,
    concurrency,
    requests: total,
    p50: median((s) => s.p50),
    p99: median((s) => s.p99),
    mean: median((s) => s.mean),
    perSecond: median((s) => s.perSecond),
    ...cpu,
  };
}

export const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : '—');
