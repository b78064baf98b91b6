/** Latency statistics of one measured series (milliseconds). */
export interface Series {
  name: string;
  concurrency: number;
  requests: number;
  p50: number;
  p99: number;
  mean: number;
  perSecond: number;
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

/** Runs `task` `total` times with `concurrency` in flight; returns per-call latencies. */
export async function measure(
  name: string,
  concurrency: number,
  total: number,
  task: (i: number) => Promise<unknown>,
): Promise<Series> {
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
}

export const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : '—');
