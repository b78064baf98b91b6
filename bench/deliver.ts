import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pLimit from 'p-limit';
import pg from 'pg';
import { parseKeyring } from '../src/crypto/keyring.ts';
import { createServiceClient } from '../src/db/client.ts';
import { startLocalStack } from '../src/local/stack.ts';
import { silentLogger } from '../src/observability/logger.ts';
import { sendStartBy } from '../src/ops/scheduled-run.ts';
import { addEndpoint } from '../src/webhooks/add-endpoint.ts';
import { drainWebhooks } from '../src/webhooks/deliver-webhooks.ts';
import { resolveHost } from '../src/webhooks/endpoint-url.ts';
import { fmt } from './stats.ts';
import { machine, parseNumberOptions, printTargets, writeResults } from './support.ts';

/**
 * npm run bench (last part): webhook deliveries a scheduled deliver-webhooks run sends
 * (claim, sign with Standard Webhooks, POST, record) against loopback receivers that answer
 * after a latency, compared with plain POSTs of the same bodies at the same concurrency in
 * the same run: the receivers' capacity, what the sender's bookkeeping leaves of it. Each
 * simulated run has the budget the scheduled function has (30 s less the recording
 * reserve) and runs back to back with the next until nothing is due. Every delivery must
 * reach its receiver exactly once. Writes bench/results/deliver-<time>.json.
 */
const options = parseNumberOptions('bench-deliver', {
  events: ['--events <n>', 'events, each delivered to every endpoint', 500],
  endpoints: ['--endpoints <n>', 'receiving endpoints', 10],
  latency: ['--latency <ms>', "a receiver's answer latency", 50],
  concurrency: ['--concurrency <n>', 'sends at once (the sender default is 8)', 8],
  timeout: ['--timeout <ms>', 'WEBHOOK_TIMEOUT_MS', 10_000],
  dbTimeout: ['--db-timeout <ms>', 'DB_TIMEOUT_MS', 5000],
});

const deliveries = options.events * options.endpoints;
/** webhook-id + path → requests received; the baseline's requests carry no webhook-id. */
const received = new Map<string, number>();
const receiver = createServer((req, res) => {
  req.resume();
  req.on('end', async () => {
    const id = req.headers['webhook-id'];
    if (typeof id === 'string') {
      const key = `${id} ${req.url}`;
      received.set(key, (received.get(key) ?? 0) + 1);
    }
    await sleep(options.latency);
    res.writeHead(204).end();
  });
});
receiver.listen(0, '127.0.0.1');
await once(receiver, 'listening');
const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;

const stack = await startLocalStack();
const admin = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
admin.on('error', () => {});
try {
  const db = createServiceClient({
    SUPABASE_URL: stack.supabaseUrl,
    SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
  });
  const keyring = parseKeyring(`k1:${randomBytes(32).toString('base64')}`);
  const endpointIds: string[] = [];
  for (let i = 0; i < options.endpoints; i++) {
    const added = await addEndpoint({
      db,
      keyring,
      mode: 'local',
      resolve: resolveHost,
      url: `${receiverUrl}/hooks/${i}`,
      eventTypes: ['webhook.test'],
    });
    if (!added.ok) throw new Error(added.error.message);
    endpointIds.push(added.value.endpoint.id);
  }
  const { rows } = await admin.query<{ body: string }>(
    `select (public.record_webhook_event('webhook.test', 'bench:' || g,
               jsonb_build_object('sequence', g, 'note', repeat('x', 200)), null, $1::uuid[])).body
     from generate_series(1, $2) g`,
    [endpointIds, options.events],
  );
  const body = rows[0]?.body ?? '{}';

  // Baseline: the receivers' capacity at this concurrency, plain POSTs of a like body.
  const limit = pLimit(options.concurrency);
  const baselineStarted = performance.now();
  await Promise.all(
    Array.from({ length: deliveries }, (_, i) =>
      limit(async () => {
        const answer = await fetch(`${receiverUrl}/hooks/${i % options.endpoints}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
        await answer.arrayBuffer();
      }),
    ),
  );
  const baselineSeconds = (performance.now() - baselineStarted) / 1000;

  const runs: Array<{ delivered: number; seconds: number }> = [];
  const started = performance.now();
  for (;;) {
    const invokedAt = Date.now();
    const startBy = sendStartBy(invokedAt, options.dbTimeout, options.timeout);
    const run = await drainWebhooks({
      db,
      keyring,
      mode: 'local',
      fetch: (url, init) => globalThis.fetch(url, init),
      log: silentLogger,
      timeoutMs: options.timeout,
      concurrency: options.concurrency,
      startBy,
      budgetMs: startBy + options.timeout - Date.now(),
    });
    if (!run.ok) throw new Error(run.error.message);
    if (run.value.claimed === 0) break;
    runs.push({ delivered: run.value.delivered, seconds: (Date.now() - invokedAt) / 1000 });
  }
  const wallSeconds = (performance.now() - started) / 1000;

  const delivered = runs.reduce((sum, r) => sum + r.delivered, 0);
  const repeats = [...received.values()].filter((n) => n > 1).length;
  const baselinePerSecond = deliveries / baselineSeconds;
  const perSecond = delivered / wallSeconds;
  const firstRun = runs[0];
  const result = {
    at: new Date().toISOString(),
    machine: machine(),
    options,
    deliveries,
    delivered,
    runs,
    wallSeconds,
    baseline: { seconds: baselineSeconds, perSecond: baselinePerSecond },
    perSecond,
    ratioToBaseline: perSecond / baselinePerSecond,
    /** What one scheduled run sends when more is due than it can: its capacity per minute. */
    perRun: runs.length > 1 && firstRun ? firstRun.delivered : null,
    targets: {
      'every delivery received exactly once': received.size === deliveries && repeats === 0,
      'every delivery recorded delivered': delivered === deliveries,
    },
  };
  console.log(
    `deliver-webhooks: ${delivered.toLocaleString()} deliveries to ${options.endpoints} endpoints in ${runs.length} runs, ` +
      `${fmt(wallSeconds, 1)} s = ${fmt(perSecond, 1)}/s; plain POSTs at concurrency ${options.concurrency}: ` +
      `${fmt(baselinePerSecond, 1)}/s; ratio ${fmt(result.ratioToBaseline, 2)}; ` +
      `${result.perRun === null ? 'all in one run' : `one run sends ${result.perRun.toLocaleString()}`} ` +
      `(receiver latency ${options.latency} ms)`,
  );
  printTargets(result.targets);
  await writeResults('deliver', result.at, result);
} finally {
  await admin.end();
  await stack.stop();
  receiver.close();
}
