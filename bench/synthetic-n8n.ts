import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { parseKeyring } from '../src/crypto/keyring.ts';
import { cpuProbe } from './cpu.ts';
import { startStackProcess } from './support.ts';

/**
 * An n8n-compatible executions API that holds no executions: every page is computed from
 * the source's base URL and the request, in time proportional to the page, so a run over a
 * million executions or ten thousand sources costs no memory here.
 *
 * A source's base URL is `<server>/g/<executions>/<growth>/<epoch ms>`: ids 1 to
 * `executions + growth × cycle` exist, where `cycle` is what the bench last set
 * (`setCycle`), so each cycle adds `growth` executions to every source; id `executions`
 * started at the given time and every other id `SPACING_MS` per id before or after it. Listing follows n8n's contract (newest id first,
 * base64 `{lastId, limit}` cursors meaning "ids below lastId", `nextCursor` null on the
 * last page, at most 250 a page); `startedAfter` is honoured.
 */
const SPACING_MS = 1000;
const MAX_LIMIT = 250;

export interface SyntheticSourceShape {
  executions: number;
  growth: number;
  newestAt: number;
}

export const syntheticPath = (shape: SyntheticSourceShape) =>
  `/g/${shape.executions}/${shape.growth}/${shape.newestAt}`;

export interface UpstreamCounts {
  lists: number;
  gets: number;
  itemsListed: number;
}

export interface SyntheticN8n {
  url: string;
  counts: UpstreamCounts;
  setCycle(cycle: number): void;
  close(): Promise<void>;
}

const SOURCE_PATH = /^\/g\/(\d+)\/(\d+)\/(\d+)\/api\/v1\/executions(?:\/(\d+))?$/;

/** Execution `id` of a source, as n8n lists it. */
export function syntheticExecution(id: number, shape: SyntheticSourceShape) {
  const startedAt = shape.newestAt + (id - shape.executions) * SPACING_MS;
  return {
    id: String(id),
    finished: true,
    // A mix n8n's billable rule splits: one in ten manual, one in twenty failed.
    mode: id % 10 === 0 ? 'manual' : 'trigger',
    retryOf: null,
    retrySuccessId: null,
    status: id % 20 === 0 ? 'error' : 'success',
    startedAt: new Date(startedAt).toISOString(),
    stoppedAt: new Date(startedAt + 700).toISOString(),
    workflowId: `wf${id % 16}`,
    waitTill: null,
  };
}

function lastIdOf(cursor: string | null): number | null {
  if (!cursor) return null;
  const id = Number(
    (JSON.parse(Buffer.from(cursor, 'base64').toString('utf8')) as { lastId: string }).lastId,
  );
  return Number.isSafeInteger(id) ? id : null;
}

export async function startSyntheticN8n(options: { latencyMs: number }): Promise<SyntheticN8n> {
  const counts: UpstreamCounts = { lists: 0, gets: 0, itemsListed: 0 };
  let cycle = 0;

  const answer = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://upstream');
    const match = SOURCE_PATH.exec(url.pathname);
    if (options.latencyMs > 0) await delay(options.latencyMs);
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify(body));
    };
    if (!match) return send(404, { message: 'Not Found' });
    const shape = {
      executions: Number(match[1]),
      growth: Number(match[2]),
      newestAt: Number(match[3]),
    };
    const top = shape.executions + shape.growth * cycle;
    if (match[4]) {
      counts.gets += 1;
      const id = Number(match[4]);
      return id >= 1 && id <= top
        ? send(200, syntheticExecution(id, shape))
        : send(404, { message: 'Not Found' });
    }
    counts.lists += 1;
    const limit = Math.min(Number(url.searchParams.get('limit') ?? 100), MAX_LIMIT);
    const below = lastIdOf(url.searchParams.get('cursor')) ?? top + 1;
    const after = url.searchParams.get('startedAfter');
    // Ids started at or after startedAfter are the newest ones: from the top down to `lowest`.
    const lowest = after
      ? Math.max(1, shape.executions + Math.ceil((Date.parse(after) - shape.newestAt) / SPACING_MS))
      : 1;
    const from = Math.min(below - 1, top);
    const to = Math.max(lowest, from - limit + 1);
    const data = [];
    for (let id = from; id >= to; id--) data.push(syntheticExecution(id, shape));
    counts.itemsListed += data.length;
    const nextCursor =
      data.length > 0 && to > lowest
        ? Buffer.from(JSON.stringify({ lastId: String(to), limit })).toString('base64')
        : null;
    return send(200, { data, nextCursor });
  };

  const server = createServer((req, res) => {
    answer(req, res).catch((error: unknown) => {
      res.writeHead(500).end(JSON.stringify({ message: String(error) }));
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    setCycle: (next) => {
      cycle = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * What both collector benchmarks run against: the local stack in its own process, its CPU
 * probe, the synthetic n8n, a superuser pool and a keyring for the sources' keys.
 */
export async function startCollectorBench(options: { latencyMs: number }) {
  const stack = await startStackProcess();
  const upstream = await startSyntheticN8n(options);
  const admin = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
  admin.on('error', () => {});
  return {
    stack,
    probe: cpuProbe(stack.pid),
    upstream,
    admin,
    keyring: parseKeyring(`k1:${randomBytes(32).toString('base64')}`),
    async stop() {
      await admin.end();
      await upstream.close();
      await stack.stop();
    },
  };
}
