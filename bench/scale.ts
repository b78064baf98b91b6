import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Agent, type Dispatcher, setGlobalDispatcher } from 'undici';
import { BACKGROUND_FUNCTION_PATH } from '../src/collector/from-config.ts';
import { sealApiKey } from '../src/n8n/api-key.ts';
import { cpuDelta } from './cpu.ts';
import { fmt } from './stats.ts';
import { machine, parseNumberOptions, printTargets, writeResults } from './support.ts';
import { startCollectorBench, syntheticPath } from './synthetic-n8n.ts';

/**
 * npm run bench:scale -- --sources N --latency MS: whole collector cycles against N
 * synthetic n8n sources answering after MS milliseconds. Each cycle calls the scheduled
 * function (netlify/functions/collect-usage.mts) as Netlify's scheduler does; its hand-offs
 * reach a stand-in for Netlify, in a process of its own, that answers 202 at once and runs
 * collect-usage-background with the request, as Netlify does. The scheduled function thus
 * has its event loop to itself, as on Netlify, where each invocation runs on an instance of
 * its own; the background invocations share theirs, and every process shares this
 * machine's cores with the RPC endpoint and PostgreSQL. Nothing is scaled: cycles run in
 * real time. Prints per cycle the sources collected, requests and RPCs per source, the
 * invocations and their durations against Netlify's limits, and what limited the cycle.
 * Writes bench/results/scale-<time>.json.
 */
const options = parseNumberOptions('bench-scale', {
  sources: ['--sources <n>', 'synthetic n8n sources', 10_000],
  latency: ['--latency <ms>', "the synthetic n8n's latency per request", 100, Number],
  cycles: ['--cycles <n>', 'cycles; the first two walk new sources, the rest are steady', 3],
  executions: ['--executions <n>', 'executions per source before the first cycle', 20],
  growth: ['--growth <n>', 'new executions per source per cycle', 5],
  concurrency: ['--concurrency <n>', 'COLLECTOR_CONCURRENCY', 16],
  slice: ['--slice <n>', 'COLLECTOR_SLICE_SOURCES', 1000],
});

const SCHEDULED_LIMIT_MS = 30_000;
const BACKGROUND_LIMIT_MS = 15 * 60_000;
const CYCLE_MS = 10 * 60_000;

// Every RPC the functions make, by database function (src/db/fetch.ts goes through undici).
const rpcCalls = new Map<string, number>();
setGlobalDispatcher(
  new Agent().compose((dispatch) => (opts: Dispatcher.DispatchOptions, handler) => {
    const fn = /\/rest\/v1\/rpc\/([^/?]+)/.exec(opts.path)?.[1];
    if (fn) rpcCalls.set(fn, (rpcCalls.get(fn) ?? 0) + 1);
    return dispatch(opts, handler);
  }),
);

/** Set in the stand-in's environment: the process runs the stand-in, not the benchmark. */
const STAND_IN = 'FLOWMETER_BENCH_NETLIFY_STAND_IN';

interface Invocation {
  sources: number;
  startedAt: number;
  ms?: number;
}

/** What the stand-in did since it was last asked. */
interface Drained {
  invocations: Invocation[];
  rpcCalls: Record<string, number>;
  cpuMs: number;
}

/**
 * Netlify's side of a background hand-off: 202 at once, the function runs on its own. Says
 * `{ url }` when it listens; on `drain` answers, once every invocation has ended, with what
 * it ran since the last drain.
 */
async function runStandIn(): Promise<void> {
  const { default: background } = await import('../netlify/functions/collect-usage-background.mts');
  let invocations: Invocation[] = [];
  const running = new Set<Promise<unknown>>();
  const netlify = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url !== BACKGROUND_FUNCTION_PATH) {
        res.writeHead(404).end();
        return;
      }
      const body = Buffer.concat(chunks).toString('utf8');
      const invocation: Invocation = {
        sources: (JSON.parse(body) as { leases: unknown[] }).leases.length,
        startedAt: performance.now(),
      };
      invocations.push(invocation);
      res.writeHead(202).end();
      const run = background(
        new Request(`${process.env.URL}${BACKGROUND_FUNCTION_PATH}`, {
          method: 'POST',
          headers: req.headers as Record<string, string>,
          body,
        }),
      ).finally(() => {
        invocation.ms = performance.now() - invocation.startedAt;
        running.delete(run);
      });
      running.add(run);
    });
  });
  await new Promise<void>((resolve) => netlify.listen(0, '127.0.0.1', resolve));
  process.env.URL = `http://127.0.0.1:${(netlify.address() as AddressInfo).port}`;
  process.on('message', async () => {
    while (running.size > 0) await Promise.allSettled([...running]);
    const cpu = process.cpuUsage();
    const drained: Drained = {
      invocations,
      rpcCalls: Object.fromEntries(rpcCalls),
      cpuMs: (cpu.user + cpu.system) / 1000,
    };
    invocations = [];
    rpcCalls.clear();
    process.send?.(drained);
  });
  // Nothing runs once the benchmark lets go: every cycle ended with a drain.
  process.once('disconnect', () => process.exit(0));
  process.send?.({ url: process.env.URL });
}

if (process.env[STAND_IN]) {
  await runStandIn();
} else {
  await runBench();
}

async function runBench(): Promise<void> {
  const bench = await startCollectorBench({ latencyMs: options.latency });
  const { stack, probe, upstream, admin, keyring } = bench;

  Object.assign(process.env, {
    SUPABASE_URL: stack.supabaseUrl,
    SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
    FLOWMETER_ENCRYPTION_KEYS: `k1:${keyring.keys.get('k1')?.toString('base64')}`,
    FLOWMETER_INTERNAL_SECRET: randomBytes(32).toString('hex'),
    LOG_LEVEL: 'error',
    COLLECTOR_CONCURRENCY: String(options.concurrency),
    COLLECTOR_SLICE_SOURCES: String(options.slice),
  });
  const standIn = fork(fileURLToPath(import.meta.url), [], {
    env: { ...process.env, [STAND_IN]: '1' },
  });
  /** The stand-in's next message, or its end. */
  const answer = <T>() =>
    new Promise<T>((resolve, reject) => {
      const exited = (code: number | null) =>
        reject(new Error(`the Netlify stand-in exited (${code})`));
      standIn.once('exit', exited);
      standIn.once('message', (m) => {
        standIn.off('exit', exited);
        resolve(m as T);
      });
    });
  process.env.URL = (await answer<{ url: string }>()).url;
  /** Waits for every background invocation of the cycle to end, and says what they did. */
  const drain = () => {
    const drained = answer<Drained>();
    standIn.send('drain');
    return drained;
  };
  let standInCpuMs = 0;
  const { default: scheduled } = await import('../netlify/functions/collect-usage.mts');

  async function addSources() {
    await admin.query(
      "insert into public.plans (id, name, included_executions, limit_policy) values ('bench-scale', 'Bench scale', null, 'unlimited')",
    );
    const { rows: tenants } = await admin.query<{ id: string }>(
      "insert into public.tenants (name, plan_id) select 'scale ' || i, 'bench-scale' from generate_series(1, $1) i returning id",
      [options.sources],
    );
    // Every source's newest execution ten minutes ago, inside the current billing period.
    const path = syntheticPath({
      executions: options.executions,
      growth: options.growth,
      newestAt: Date.now() - 600_000,
    });
    const ids = tenants.map((t) => t.id);
    await admin.query(
      `insert into public.n8n_sources (tenant_id, name, base_url, api_key_ciphertext)
     select t, 'synthetic', $2, k from unnest($1::uuid[], $3::text[]) as x(t, k)`,
      [
        ids,
        `${upstream.url}${path}`,
        ids.map((id) => sealApiKey(keyring, id, `n8n_api_${randomBytes(8).toString('hex')}`)),
      ],
    );
  }

  interface CycleResult {
    cycle: number;
    seconds: number;
    sourcesCollected: number;
    executionsCollected: number;
    upstreamRequestsPerSource: number;
    rpcsPerSource: number;
    rpcsByFunction: Record<string, number>;
    scheduledSeconds: number;
    backgroundInvocations: number;
    backgroundMaxSeconds: number;
    latencyBoundSeconds: number;
    limitedBy: string;
    cpuSeconds?: { functionsAndUpstream: number; rpcEndpoint: number; postgres: number };
  }

  async function cycle(n: number): Promise<CycleResult> {
    upstream.setCycle(n - 1);
    rpcCalls.clear();
    const requestsBefore = upstream.counts.lists + upstream.counts.gets;
    const { rows: startRows } = await admin.query<{ at: Date; executions: string }>(
      'select now() as at, (select count(*) from public.executions) as executions',
    );
    const start = startRows[0] as { at: Date; executions: string };
    const cpuBefore = probe?.();
    const t0 = performance.now();
    const response = await scheduled();
    const scheduledMs = performance.now() - t0;
    if (response.status !== 200) throw new Error(`collect-usage answered ${response.status}`);
    const worker = await drain();
    const ms = performance.now() - t0;
    const cpuSeconds = cpuDelta(cpuBefore, probe?.(), 1000);
    const workerCpuSeconds = (worker.cpuMs - standInCpuMs) / 1000;
    standInCpuMs = worker.cpuMs;
    const invocations = worker.invocations;
    for (const [fn, n] of Object.entries(worker.rpcCalls)) {
      rpcCalls.set(fn, (rpcCalls.get(fn) ?? 0) + n);
    }

    const { rows } = await admin.query<{ collected: string; executions: string }>(
      `select (select count(*) from public.collector_source_state where last_success_at >= $1) as collected,
            (select count(*) from public.executions) as executions`,
      [start.at],
    );
    const collected = Number(rows[0]?.collected);
    const requests = upstream.counts.lists + upstream.counts.gets - requestsBefore;
    const rpcs = [...rpcCalls.values()].reduce((a, b) => a + b, 0);
    const workers = options.concurrency * (1 + invocations.length);
    // The cycle if only n8n's answers took time: every request waited for by one of the pools.
    const latencyBoundMs = (requests * options.latency) / workers;
    const backgroundMaxMs = Math.max(0, ...invocations.map((i) => i.ms ?? 0));
    const limitedBy =
      scheduledMs > SCHEDULED_LIMIT_MS
        ? 'the scheduled function overran 30 s'
        : ms <= 1.5 * latencyBoundMs
          ? `n8n's latency: ${fmt(requests / options.sources)} requests per source × ${options.latency} ms ÷ ${workers} workers`
          : `this machine: ${1 + invocations.length} invocations, the RPC endpoint and PostgreSQL share ${machine().cpus} cores (latency alone would take ${fmt(latencyBoundMs / 1000, 1)} s)`;
    return {
      cycle: n,
      seconds: ms / 1000,
      sourcesCollected: collected,
      executionsCollected: Number(rows[0]?.executions) - Number(start.executions),
      // Per source of the deployment: every one is due, and attempted, each cycle.
      upstreamRequestsPerSource: requests / options.sources,
      rpcsPerSource: rpcs / options.sources,
      rpcsByFunction: Object.fromEntries(rpcCalls),
      scheduledSeconds: scheduledMs / 1000,
      backgroundInvocations: invocations.length,
      backgroundMaxSeconds: backgroundMaxMs / 1000,
      latencyBoundSeconds: latencyBoundMs / 1000,
      limitedBy,
      ...(cpuSeconds
        ? {
            cpuSeconds: {
              functionsAndUpstream: cpuSeconds.client + workerCpuSeconds,
              rpcEndpoint: cpuSeconds.rpc,
              postgres: cpuSeconds.postgres,
            },
          }
        : {}),
    };
  }

  try {
    await addSources();
    console.log(
      `scale: ${options.sources.toLocaleString()} sources, ${options.latency} ms n8n latency, concurrency ${options.concurrency}, slices of ${options.slice}; real time, background invocations in a process of their own\n`,
    );
    const cycles: CycleResult[] = [];
    for (let n = 1; n <= options.cycles; n++) {
      const c = await cycle(n);
      cycles.push(c);
      console.log(
        `cycle ${n}: ${c.sourcesCollected} sources (${c.executionsCollected} executions) in ${fmt(c.seconds, 1)} s; ` +
          `scheduled ${fmt(c.scheduledSeconds, 1)} s + ${c.backgroundInvocations} background (longest ${fmt(c.backgroundMaxSeconds, 1)} s); ` +
          `${fmt(c.upstreamRequestsPerSource)} n8n requests and ${fmt(c.rpcsPerSource)} RPCs per source`,
      );
      console.log(`         RPCs: ${JSON.stringify(c.rpcsByFunction)}`);
      if (c.cpuSeconds) {
        console.log(
          `         cpu s: functions + upstream ${fmt(c.cpuSeconds.functionsAndUpstream, 1)}, RPC endpoint ${fmt(c.cpuSeconds.rpcEndpoint, 1)}, postgres ${fmt(c.cpuSeconds.postgres, 1)}`,
        );
      }
      console.log(`         limited by ${c.limitedBy}`);
    }
    const steady = cycles.slice(2);
    const every = (pick: (c: CycleResult) => boolean) => cycles.every(pick);
    const result = {
      at: new Date().toISOString(),
      machine: machine(),
      options,
      cycles,
      targets: {
        [`every cycle collects all ${options.sources} sources`]: every(
          (c) => c.sourcesCollected === options.sources,
        ),
        'every cycle within 10 minutes': every((c) => c.seconds * 1000 <= CYCLE_MS),
        'scheduled function within 30 s': every(
          (c) => c.scheduledSeconds * 1000 <= SCHEDULED_LIMIT_MS,
        ),
        'background invocations within 15 minutes': every(
          (c) => c.backgroundMaxSeconds * 1000 <= BACKGROUND_LIMIT_MS,
        ),
        ...(steady.length
          ? {
              'steady state: one n8n request per source': steady.every(
                (c) => c.upstreamRequestsPerSource <= 1.001,
              ),
              'steady state: at most two RPCs per source (claims and releases batched)':
                steady.every((c) => c.rpcsPerSource <= 2),
            }
          : {}),
      },
    };
    printTargets(result.targets);
    await writeResults('scale', result.at, result);
  } finally {
    standIn.disconnect();
    await bench.stop();
  }
}
