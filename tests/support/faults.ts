import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import type pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import type { Database } from '../../src/db/database.types.ts';
import { rpcFetch as productionFetch } from '../../src/db/fetch.ts';
import { stack, superuser } from './stack.ts';

/**
 * Fault injection for the collector: a seeded PRNG, a fetch wrapper that sees every RPC
 * call our code makes to the database, and test-only triggers that fail an ingest
 * transaction from the inside after executions were inserted, or hold a claim inside its
 * transaction until the test lets it commit.
 */

/** mulberry32: a tiny seeded PRNG, so a failing seed replays exactly. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Rng {
  private readonly next: () => number;

  constructor(seed: number) {
    this.next = mulberry32(seed);
  }

  /** [0, 1) */
  float(): number {
    return this.next();
  }

  /** An integer from lo to hi, both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)] as T;
  }

  /** Picks by weight: [[weight, value], …]. */
  weighted<T>(choices: ReadonlyArray<readonly [number, T]>): T {
    const total = choices.reduce((n, [w]) => n + w, 0);
    let roll = this.next() * total;
    for (const [w, value] of choices) {
      roll -= w;
      if (roll < 0) return value;
    }
    return (choices.at(-1) as readonly [number, T])[1];
  }

  sample<T>(items: readonly T[], n: number): T[] {
    const copy = [...items];
    for (let i = copy.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
    }
    return copy.slice(0, n);
  }
}

// RPC interception ------------------------------------------------------------------------

export interface RpcCall {
  /** The database function called, e.g. `ingest_execution_page`. */
  fn: string;
  /** 1-based, over every RPC call this client made. */
  index: number;
  /** 1-based, over this client's calls of `fn`. */
  indexOfFn: number;
  /** The request's signal: what a real transport ends the request on. */
  signal: AbortSignal | undefined;
}

/** Decides what happens to one RPC call; `send` forwards it to the real endpoint. */
export type RpcHook = (call: RpcCall, send: () => Promise<Response>) => Promise<Response>;

const RPC_PATH = /\/rest\/v1\/rpc\/([^/?]+)/;

/** A fetch that passes every RPC call to our database through `hook` (other requests go straight through). */
export function rpcFetch(hook: RpcHook): typeof fetch {
  const counts = new Map<string, number>();
  let index = 0;
  return async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    const fn = RPC_PATH.exec(new URL(url).pathname)?.[1];
    // The transport the service clients use in production (src/db/client.ts).
    const send = () => productionFetch(input, init);
    if (!fn) return send();
    index += 1;
    const indexOfFn = (counts.get(fn) ?? 0) + 1;
    counts.set(fn, indexOfFn);
    return hook({ fn, index, indexOfFn, signal: init?.signal ?? undefined }, send);
  };
}

/** A service-role client whose requests go through `fetchImpl`. */
export function faultyDb(fetchImpl: typeof fetch): SupabaseClient<Database> {
  return createClient<Database>(stack.supabaseUrl, stack.serviceRoleKey, {
    auth: { persistSession: false, autoRefreshToken: false },
    global: { fetch: fetchImpl },
  });
}

/** What undici throws for a connection reset; postgrest-js turns it into an `error`. */
export const connectionReset = (what: string) =>
  new TypeError(`fetch failed (injected: ${what})`, {
    cause: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }),
  });

/** The database never answers: the request ends only when its signal aborts, as undici's does. */
export function hangUntilAborted(call: RpcCall): Promise<Response> {
  return new Promise((_, reject) => {
    const aborted = () => reject(call.signal?.reason ?? new DOMException('aborted', 'AbortError'));
    if (call.signal?.aborted) aborted();
    else call.signal?.addEventListener('abort', aborted, { once: true });
  });
}

/** The request never reaches the database. */
export async function dropRequest(call: RpcCall): Promise<Response> {
  throw connectionReset(`${call.fn} #${call.indexOfFn} dropped before reaching the database`);
}

/** The database runs and commits the call; its answer is lost on the way back. */
export async function loseResponse(
  call: RpcCall,
  send: () => Promise<Response>,
): Promise<Response> {
  const response = await send();
  await response.arrayBuffer();
  throw connectionReset(`${call.fn} #${call.indexOfFn} answered ${response.status}, answer lost`);
}

/**
 * A Supabase URL, for a process configured by its environment (the CLI, a scheduled
 * function), whose every request is answered as PostgREST answers when it timed out waiting
 * for a database connection: 504 with PGRST003. Something listens, but the database does not
 * answer. Listening for this test file only.
 */
export function useTimedOutDatabase(): { url: () => string } {
  const server = createServer((_, res) => {
    res.writeHead(504, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        code: 'PGRST003',
        message: 'Timed out acquiring connection from connection pool.',
        details: null,
        hint: null,
      }),
    );
  });
  beforeAll(() => new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening)));
  afterAll(() => new Promise<void>((closed) => server.close(() => closed())));
  return { url: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/**
 * A Supabase URL in front of the stack at `target`, for code configured by its environment
 * (a Netlify function), where the RPCs named in `hang` are accepted and never answered, as by
 * a hung PostgREST or a database stuck on a lock; every other request goes through.
 * `answered(fn)` is what the stack answered to fn's calls. Listening for this test file
 * only; the hung connections are dropped when it ends.
 */
export function useHungRpcs(target: () => string): {
  url: () => string;
  hang: Set<string>;
  answered: (fn: string) => unknown[];
} {
  const hang = new Set<string>();
  const answers = new Map<string, unknown[]>();
  const server = createServer((req, res) => {
    const fn = /^\/rest\/v1\/rpc\/([^/?]+)/.exec(req.url ?? '')?.[1];
    if (fn && hang.has(fn)) return;
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers)) {
        if (typeof value === 'string' && !['host', 'content-length', 'connection'].includes(name)) {
          headers.set(name, value);
        }
      }
      const body = chunks.length > 0 ? Buffer.concat(chunks) : null;
      const answer = await fetch(`${target()}${req.url}`, {
        method: req.method ?? 'GET',
        headers,
        ...(body ? { body } : {}),
      });
      const text = await answer.text();
      if (fn && answer.ok && text) answers.set(fn, [...(answers.get(fn) ?? []), JSON.parse(text)]);
      res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? '' });
      res.end(text);
    });
  });
  beforeAll(() => new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening)));
  afterAll(() => {
    server.closeAllConnections();
    return new Promise<void>((closed) => server.close(() => closed()));
  });
  return {
    url: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hang,
    answered: (fn) => answers.get(fn) ?? [],
  };
}

// Mid-transaction failures ----------------------------------------------------------------

/**
 * Where an armed trigger raises, inside ingest_execution_page's transaction:
 * - executions: after the page's executions rows of the tenant were inserted (an after
 *   row trigger: it fires at the end of the statement that inserted them);
 * - counters: after a usage_counters row of the tenant was inserted or moved (the same
 *   statement, which also inserted the page's executions);
 * - state: when the source's collector_source_state row is updated by the ingest (walk
 *   progress or the lease extension, after the page was written).
 */
export type FaultPoint = 'executions' | 'counters' | 'state';
export const FAULT_POINTS: readonly FaultPoint[] = ['executions', 'counters', 'state'];

/**
 * Test-only objects in their own schema (not public/private, so catalogue tests do not
 * see them). A trigger raises while its point is armed for the row's tenant (or source,
 * for `state`). A raise rolls back any bookkeeping the trigger would do, so the test
 * arms right before the one call that must fail and disarms right after it. Test files
 * running at once share the objects: the last one to finish drops them.
 */
const INSTALL_SQL = `
  create schema if not exists fault_test;
  create table if not exists fault_test.users (id uuid primary key);
  create table if not exists fault_test.armed (
    target uuid not null,
    point text not null check (point in ('executions', 'counters', 'state', 'claim')),
    primary key (target, point)
  );
  create or replace function fault_test.raise_if_armed()
  returns trigger
  language plpgsql
  set search_path = ''
  as $$
  declare
    -- TG_ARGV[0]: the fault point; TG_ARGV[1]: the column holding the arming target.
    armed_for uuid := (to_jsonb(new) ->> tg_argv[1])::uuid;
  begin
    if exists (select 1 from fault_test.armed a where a.target = armed_for and a.point = tg_argv[0])
       and current_query() like '%ingest_execution_page%' then
      raise exception 'fault_test: injected failure at % (%.%) for %',
        tg_argv[0], tg_table_schema, tg_table_name, armed_for
        using errcode = 'XX000';
    end if;
    return new;
  end;
  $$;
  -- A claim that leased an armed source waits for the lock holdClaims takes, inside its
  -- transaction, once its statement has locked and updated every row it claims.
  create or replace function fault_test.hold_if_armed()
  returns trigger
  language plpgsql
  set search_path = ''
  as $$
  begin
    if current_query() like '%claim_collector_sources%' and exists (
      select 1 from claimed c join fault_test.armed a on a.target = c.source_id and a.point = 'claim'
    ) then
      perform pg_advisory_xact_lock(hashtext('fault_test.claim'));
    end if;
    return null;
  end;
  $$;
  -- The RPC endpoint runs the collector's functions as service_role, and so the triggers.
  revoke all on function fault_test.raise_if_armed() from public;
  revoke all on function fault_test.hold_if_armed() from public;
  grant usage on schema fault_test to service_role;
  grant select on fault_test.armed to service_role;
  grant execute on function fault_test.raise_if_armed() to service_role;
  grant execute on function fault_test.hold_if_armed() to service_role;
  create or replace trigger fault_test_executions after insert on public.executions
    for each row execute function fault_test.raise_if_armed('executions', 'tenant_id');
  create or replace trigger fault_test_counters after insert or update on public.usage_counters
    for each row execute function fault_test.raise_if_armed('counters', 'tenant_id');
  create or replace trigger fault_test_state before update on public.collector_source_state
    for each row execute function fault_test.raise_if_armed('state', 'source_id');
  create or replace trigger fault_test_claim after update on public.collector_source_state
    referencing new table as claimed
    for each statement execute function fault_test.hold_if_armed();
`;

/** This test file, among those using the fault objects at once (they share one database). */
const FAULT_USER = randomUUID();

/** One installer or remover at a time: a re-run of a file, or two files sharing this helper. */
async function underInstallLock(work: (client: pg.PoolClient) => Promise<void>): Promise<void> {
  const client = await superuser().connect();
  try {
    await client.query('begin');
    await client.query("select pg_advisory_xact_lock(hashtext('fault_test.install'))");
    await work(client);
    await client.query('commit');
  } catch (error) {
    await client.query('rollback');
    throw error;
  } finally {
    client.release();
  }
}

async function installFaultTriggers(): Promise<void> {
  await underInstallLock(async (client) => {
    await client.query(INSTALL_SQL);
    await client.query('insert into fault_test.users (id) values ($1) on conflict do nothing', [
      FAULT_USER,
    ]);
  });
}

/** Drops the fault objects once no other test file still uses them. */
async function removeFaultTriggers(): Promise<void> {
  await underInstallLock(async (client) => {
    await client.query('delete from fault_test.users where id = $1', [FAULT_USER]);
    const { rows } = await client.query('select 1 from fault_test.users limit 1');
    if (rows.length > 0) return;
    await client.query(`
      drop trigger if exists fault_test_executions on public.executions;
      drop trigger if exists fault_test_counters on public.usage_counters;
      drop trigger if exists fault_test_state on public.collector_source_state;
      drop trigger if exists fault_test_claim on public.collector_source_state;
      drop schema if exists fault_test cascade;
    `);
  });
}

/**
 * Installs the fault triggers for this test file and removes them after it, as one pair: a
 * file cannot install them and forget to leave, which would keep them armed for the others.
 */
export function useFaultTriggers(): void {
  beforeAll(installFaultTriggers);
  afterAll(removeFaultTriggers);
}

/** Arms `point` for a tenant (executions, counters) or a source (state). */
export async function arm(target: string, point: FaultPoint): Promise<void> {
  await superuser().query(
    'insert into fault_test.armed (target, point) values ($1, $2) on conflict do nothing',
    [target, point],
  );
}

export async function disarm(target: string): Promise<void> {
  await superuser().query('delete from fault_test.armed where target = $1', [target]);
}

/** An RPC hook that fails the call from inside its transaction: armed for this one call. */
export async function failInsideTransaction(
  target: string,
  point: FaultPoint,
  send: () => Promise<Response>,
): Promise<Response> {
  await arm(target, point);
  try {
    return await send();
  } finally {
    await disarm(target);
  }
}

/**
 * Holds every claim that leases one of `sourceIds` inside its transaction, with the rows it
 * claimed locked, until `commit`: the claim has reached the database and commits whatever
 * its caller does meanwhile, as neither PostgREST nor the local RPC endpoint cancels a query
 * whose client went away. `commit` lets it go and returns once it has committed.
 */
export async function holdClaims(sourceIds: string[]) {
  const holder = await superuser().connect();
  await holder.query("select pg_advisory_lock(hashtext('fault_test.claim'))");
  await superuser().query(
    "insert into fault_test.armed (target, point) select unnest($1::uuid[]), 'claim' on conflict do nothing",
    [sourceIds],
  );
  return {
    async commit() {
      await superuser().query(
        "delete from fault_test.armed where target = any ($1::uuid[]) and point = 'claim'",
        [sourceIds],
      );
      await holder.query("select pg_advisory_unlock(hashtext('fault_test.claim'))");
      holder.release();
      // Waits on the rows the held claim locked (all of them before it was held), so until
      // it has committed.
      await superuser().query(
        'select 1 from public.collector_source_state where source_id = any ($1::uuid[]) for update',
        [sourceIds],
      );
    },
  };
}

// Leases ----------------------------------------------------------------------------------

/** What the lease timeout does after a real crash: the lease is free, the source due. */
export async function expireLease(sourceId: string): Promise<void> {
  await superuser().query(
    `update public.collector_source_state
     set lease_expires_at = case when lease_token is null then lease_expires_at else now() - interval '1 second' end,
         next_attempt_at = now()
     where source_id = $1`,
    [sourceId],
  );
}

/** A promise with its resolve function, to hold one run at a point while another works. */
export function gate<T = void>() {
  let open!: (value: T) => void;
  const opened = new Promise<T>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

/** Resolves for everyone once `n` callers have arrived: holds concurrent runs at one point. */
export function barrier(n: number): () => Promise<void> {
  const all = gate();
  let arrived = 0;
  return async () => {
    arrived += 1;
    if (arrived >= n) all.open();
    await all.opened;
  };
}

// Lock interleavings ------------------------------------------------------------------------

/**
 * Until a backend waits for a lock another transaction holds: the one with this pid, or
 * any whose query mentions `queryLike` (a request that went through the RPC endpoint,
 * whose backend the test cannot name). Orders racing transactions deterministically. `pool`:
 * the superuser's connections of the stack to look at (the run's shared one by default).
 */
export async function waitForLockWait(
  backend: { pid: number } | { queryLike: string },
  pool: Pick<pg.Pool, 'query'> = superuser(),
) {
  const [condition, value] =
    'pid' in backend ? ['pid = $1', backend.pid] : ['query like $1', `%${backend.queryLike}%`];
  for (let i = 0; i < 500; i++) {
    const { rows } = await pool.query(
      `select 1 from pg_stat_activity where ${condition} and wait_event_type = 'Lock' and pid <> pg_backend_pid()`,
      [value],
    );
    if (rows.length > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`no backend matching ${JSON.stringify(backend)} ever waited for a lock`);
}
