import pg from 'pg';
import { describe, expect, it } from 'vitest';
import type { RunSummary } from '../../src/collector/run-collection.ts';
import { PAGES_PER_INGEST, type SourceOutcome } from '../../src/collector/sync-source.ts';
import type { ExecutionStatus } from '../../src/n8n/schemas.ts';
import {
  collect,
  countersOf,
  createSource,
  expectedBillable,
  fastN8nClient,
  sourceState,
  storedExecutionIds,
  type TestSource,
  useN8nServer,
} from '../support/collector.ts';
import { releasedReservations } from '../support/enforcement.ts';
import type { FakeExecutionInput, FakeFailure, FakeN8n } from '../support/fake-n8n.ts';
import {
  barrier,
  dropRequest,
  expireLease,
  FAULT_POINTS,
  type FaultPoint,
  failInsideTransaction,
  faultyDb,
  gate,
  loseResponse,
  Rng,
  type RpcHook,
  rpcFetch,
  useFaultTriggers,
  waitForLockWait,
} from '../support/faults.ts';
import { stack, superuser } from '../support/stack.ts';

/**
 * Exactly once under faults: every final execution of a source is stored once and counted
 * once, in one tenant period, and releases at most one of the runner's reservations,
 * whatever fails on the way — requests to our database lost
 * before or after they commit, transactions failing from the inside, the collector dying
 * mid-walk, n8n failing, two runs working the same source.
 */

const server = useN8nServer();

useFaultTriggers();

const FINAL: ReadonlySet<ExecutionStatus> = new Set(['success', 'error', 'crashed', 'canceled']);
const isFinal = (status: ExecutionStatus) => FINAL.has(status);

/** `agoSeconds` before now: inside the tenant's current period (see periodSource). */
const recent = (agoSeconds: number) =>
  new Date(Date.now() - Math.max(1, agoSeconds) * 1000).toISOString();

interface PeriodSource extends TestSource {
  periodStart: Date;
  periodEnd: Date;
}

/**
 * A source whose tenant has a Stripe period around now (started a day ago), so executions
 * of the last few hours are in the current period whatever the date (no month boundary).
 */
async function periodSource(): Promise<PeriodSource> {
  const source = await createSource(server);
  const { rows } = await superuser().query(
    `update public.tenants
     set current_period_start = date_trunc('second', now()) - interval '1 day',
         current_period_end = date_trunc('second', now()) + interval '29 days'
     where id = $1
     returning current_period_start, current_period_end`,
    [source.tenantId],
  );
  return {
    ...source,
    periodStart: rows[0].current_period_start,
    periodEnd: rows[0].current_period_end,
  };
}

// Ground truth, read as the superuser --------------------------------------------------------

async function duplicates(sourceId: string) {
  const { rows } = await superuser().query(
    `select execution_id::int as id, count(*)::int as n from public.executions
     where source_id = $1 group by 1 having count(*) > 1`,
    [sourceId],
  );
  return rows;
}

/** Per period, the counters that do not match the raw rows (empty when counters = raw rows). */
async function countersVsRawRows(tenantId: string) {
  const { rows } = await superuser().query(
    `with raw as (
       select period_start, count(*) as executions,
              count(*) filter (where billable) as billable,
              count(*) filter (where billable and status = 'success') as billable_success,
              count(*) filter (where billable and status <> 'success') as billable_failed,
              coalesce(sum(duration_ms) filter (where billable), 0) as billable_duration_ms
       from public.executions where tenant_id = $1 group by 1
     ),
     counters as (
       select period_start, executions, billable, billable_success, billable_failed, billable_duration_ms
       from public.usage_counters where tenant_id = $1
     ),
     raw_daily as (
       select (coalesce(started_at, stopped_at) at time zone 'UTC')::date as day,
              count(*) as executions, count(*) filter (where billable) as billable
       from public.executions where tenant_id = $1 group by 1
     ),
     daily as (select day, executions, billable from public.usage_daily where tenant_id = $1)
     select 'period ' || coalesce(r.period_start, c.period_start)::text as what,
            to_jsonb(r) as raw, to_jsonb(c) as counted
     from raw r full join counters c using (period_start)
     -- A counters row of zeros with no raw rows agrees (a reserving decision creates one).
     where (coalesce(r.executions, 0), coalesce(r.billable, 0), coalesce(r.billable_success, 0),
            coalesce(r.billable_failed, 0), coalesce(r.billable_duration_ms, 0))
       is distinct from (coalesce(c.executions, 0), coalesce(c.billable, 0), coalesce(c.billable_success, 0),
                         coalesce(c.billable_failed, 0), coalesce(c.billable_duration_ms, 0))
     union all
     select 'day ' || coalesce(r.day, d.day)::text, to_jsonb(r), to_jsonb(d)
     from raw_daily r full join daily d using (day)
     where (r.executions, r.billable) is distinct from (d.executions, d.billable)`,
    [tenantId],
  );
  return rows;
}

async function storedRows(sourceId: string) {
  const { rows } = await superuser().query(
    `select execution_id::int as id, status, mode, period_start, billable
     from public.executions where source_id = $1 order by 1`,
    [sourceId],
  );
  return rows as Array<{
    id: number;
    status: string;
    mode: string;
    period_start: Date;
    billable: boolean;
  }>;
}

async function leftovers(sourceId: string) {
  const { rows } = await superuser().query(
    `select (select count(*)::int from public.open_executions where source_id = $1) as open,
            (select count(*)::int from public.execution_probes where source_id = $1) as probes`,
    [sourceId],
  );
  return rows[0] as { open: number; probes: number };
}

async function gapsOf(sourceId: string) {
  const { rows } = await superuser().query(
    'select kind, from_id::int, to_id::int from public.collection_gaps where source_id = $1 order by id',
    [sourceId],
  );
  return rows as Array<{ kind: string; from_id: number; to_id: number }>;
}

/** The final executions n8n holds that belong to the source's current period. */
function finalInPeriod(source: PeriodSource) {
  return source.fake
    .all()
    .filter((e) => isFinal(e.status))
    .filter((e) => {
      // The period of its start, or of its end for one that never started.
      const at = Date.parse((e.startedAt ?? e.stoppedAt) as string);
      return at >= source.periodStart.getTime() && at < source.periodEnd.getTime();
    });
}

/**
 * Per period, where the reservations disagree with the counters: `reserved` is not the
 * number of active reservations, or more were released as collected than billable
 * executions were counted (empty when they agree).
 */
async function reservationsVsCounters(tenantId: string) {
  const { rows } = await superuser().query(
    `select c.period_start, c.reserved::int, c.billable::int,
            count(r.id) filter (where r.released_at is null)::int as active,
            count(r.id) filter (where r.release_reason = 'collected')::int as collected
     from public.usage_counters c
     left join public.usage_reservations r on r.tenant_id = c.tenant_id and r.period_start = c.period_start
     where c.tenant_id = $1
     group by c.period_start, c.reserved, c.billable
     having c.reserved <> count(r.id) filter (where r.released_at is null)
         or count(r.id) filter (where r.release_reason = 'collected') > c.billable`,
    [tenantId],
  );
  return rows;
}

/** Runs allowed by the runner before any collection: each reserves one execution. */
async function reserveRuns(tenantId: string, runs: number) {
  for (let i = 0; i < runs; i++) {
    const { rows } = await superuser().query(
      "select public.enforce_usage($1, 'wf1', $2) ->> 'reason' as reason",
      [tenantId, `run-${i}`],
    );
    expect(rows[0].reason).toBe('within_limit');
  }
}

/**
 * What must hold after any run, however it ended: no duplicate, counters = raw rows, no
 * phantom, reservations in step with the counters.
 */
async function expectConsistent(source: PeriodSource, where: string) {
  expect(await duplicates(source.sourceId), `${where}: duplicates`).toEqual([]);
  expect(await countersVsRawRows(source.tenantId), `${where}: counters vs raw rows`).toEqual([]);
  expect(
    await reservationsVsCounters(source.tenantId),
    `${where}: reservations vs counters`,
  ).toEqual([]);
  const truth = new Map(finalInPeriod(source).map((e) => [Number(e.id), e]));
  for (const row of await storedRows(source.sourceId)) {
    const e = truth.get(row.id);
    expect(e, `${where}: stored execution ${row.id} is a final in-period execution`).toBeDefined();
    expect({ status: row.status, mode: row.mode }, `${where}: execution ${row.id}`).toEqual({
      status: e?.status,
      mode: e?.mode,
    });
    expect(row.period_start, `${where}: execution ${row.id} period`).toEqual(source.periodStart);
  }
}

/** Everything final in n8n is stored once and counted once; nothing else is. */
async function expectExact(source: PeriodSource, where: string) {
  await expectConsistent(source, where);
  const finals = finalInPeriod(source);
  expect(await storedExecutionIds(source.sourceId), `${where}: stored ids`).toEqual(
    finals.map((e) => Number(e.id)).sort((a, b) => a - b),
  );
  const counters = await countersOf(source.tenantId);
  expect(counters.executions, `${where}: executions counted`).toBe(finals.length);
  expect(counters.billable, `${where}: billable counted`).toBe(expectedBillable(source.fake));
}

// A random n8n history ---------------------------------------------------------------------

const MODES = [
  [40, 'trigger'],
  [20, 'webhook'],
  [8, 'retry'],
  [12, 'manual'],
  [10, 'integrated'],
  [4, 'error'],
  [3, 'cli'],
  [2, 'internal'],
  [1, 'evaluation'],
] as const;
const FINAL_STATUSES = [
  [70, 'success'],
  [15, 'error'],
  [5, 'crashed'],
  [10, 'canceled'],
] as const;
const OPEN_STATUSES = [
  [5, 'running'],
  [3, 'waiting'],
  [2, 'new'],
] as const;

/** Adds executions to n8n as time goes by: ids ascending, startedAt roughly with them. */
class History {
  /** Seconds before now of the next execution's start; counts down towards now. */
  private clock: number;
  private added = 0;
  private readonly rng: Rng;
  private readonly fake: FakeN8n;

  constructor(rng: Rng, fake: FakeN8n, startAgoSeconds: number) {
    this.rng = rng;
    this.fake = fake;
    this.clock = startAgoSeconds;
  }

  private tick(): number {
    this.clock = Math.max(5, this.clock - this.rng.int(0, 6));
    return this.clock + this.rng.int(0, 3); // a little out of order, as in n8n
  }

  add(n: number, openShare: number): void {
    for (let i = 0; i < n; i++) {
      const status: ExecutionStatus = this.rng.chance(openShare)
        ? this.rng.weighted(OPEN_STATUSES)
        : this.rng.weighted(FINAL_STATUSES);
      const mode = this.rng.weighted(MODES);
      const input: FakeExecutionInput = {
        status,
        mode,
        workflowId: `wf${this.rng.int(1, 5)}`,
        startedAt: status === 'new' ? null : recent(this.tick()),
      };
      if (mode === 'retry' && this.added > 0) input.retryOf = String(this.rng.int(1, this.added));
      this.fake.add(input);
      this.added += 1;
    }
  }

  /** Moves some unfinished executions on: started, waiting, finished. `all` finishes every one. */
  progress(share: number, all = false): void {
    for (const e of this.fake.all()) {
      if (isFinal(e.status) || !(all || this.rng.chance(share))) continue;
      const finish = all || this.rng.chance(0.6);
      const status: ExecutionStatus = finish
        ? this.rng.weighted(FINAL_STATUSES)
        : e.status === 'running'
          ? 'waiting'
          : 'running';
      if (e.status === 'new' && finish && this.rng.chance(0.25)) {
        // Never started: canceled in the queue, or crashed there (an n8n restart).
        const never = this.rng.pick(['canceled', 'crashed'] as const);
        this.fake.update(e.id, { status: never, startedAt: null, stoppedAt: recent(this.tick()) });
        continue;
      }
      this.fake.update(e.id, {
        status,
        ...(e.startedAt === null ? { startedAt: recent(this.tick()) } : {}),
      });
    }
  }
}

// Random faults --------------------------------------------------------------------------------

type Fault =
  | { kind: 'none' }
  /** The nth call (of fn, or of any function) never reaches the database. */
  | { kind: 'drop'; fn: string | null; nth: number }
  /** The nth call commits, its answer is lost. */
  | { kind: 'lose'; fn: string | null; nth: number }
  /** The collector dies at its nth call: that call (maybe committed) and every later one are lost. */
  | { kind: 'crash'; nth: number; committed: boolean }
  /** The nth ingest fails inside its transaction, after executions were inserted. */
  | { kind: 'mid-transaction'; nth: number; point: FaultPoint }
  /** n8n fails the nth request (and `times` - 1 retries of it). */
  | { kind: 'n8n'; nth: number; failure: FakeFailure; times: number }
  /** The run's budget runs out after the nth ingest: the walk is deferred. */
  | { kind: 'budget'; nth: number }
  /** The lease times out after the nth ingest and another run takes the source over. */
  | { kind: 'overlap'; nth: number };

const FUNCTIONS = [
  [6, 'ingest_execution_page'],
  [1, 'claim_collector_sources'],
  [1, 'release_collector_sources'],
  [1, 'list_open_executions'],
  [1, 'close_open_executions'],
  [2, null],
] as const;

function randomFault(rng: Rng, pages: number): Fault {
  const ingestNth = () => rng.int(1, pages + 1);
  const fnFault = (kind: 'drop' | 'lose'): Fault => {
    const fn = rng.weighted(FUNCTIONS);
    const nth =
      fn === null
        ? rng.int(1, pages + 6)
        : fn === 'ingest_execution_page'
          ? ingestNth()
          : fn === 'release_collector_sources'
            ? 1
            : rng.int(1, 2);
    return { kind, fn, nth };
  };
  return rng.weighted<() => Fault>([
    [1, () => ({ kind: 'none' })],
    [3, () => fnFault('drop')],
    [3, () => fnFault('lose')],
    [2, () => ({ kind: 'crash', nth: rng.int(2, pages + 4), committed: rng.chance(0.5) })],
    [3, () => ({ kind: 'mid-transaction', nth: ingestNth(), point: rng.pick(FAULT_POINTS) })],
    [
      2,
      () =>
        rng.weighted<Fault>([
          [
            2,
            {
              kind: 'n8n',
              nth: rng.int(1, pages + 2),
              failure: { kind: 'status', status: 500 },
              times: rng.int(1, 3),
            },
          ],
          [
            1,
            {
              kind: 'n8n',
              nth: rng.int(1, pages + 2),
              failure: { kind: 'network' },
              times: rng.int(1, 3),
            },
          ],
          [
            1,
            {
              kind: 'n8n',
              nth: rng.int(1, pages + 2),
              failure: {
                kind: 'malformed',
                body: rng.pick(['<html>502 Bad Gateway</html>', { data: 'nope' }]),
              },
              times: 1,
            },
          ],
        ]),
    ],
    [1, () => ({ kind: 'budget', nth: ingestNth() })],
    [1, () => ({ kind: 'overlap', nth: ingestNth() })],
  ])();
}

function describeFault(fault: Fault): string {
  const { kind, ...rest } = fault;
  return `${kind} ${JSON.stringify(rest)}`;
}

/** One collector run over `source` with `fault` injected; resolves whatever happens. */
async function faultyRun(
  source: PeriodSource,
  fault: Fault,
  settings: { pageSize: number; pagesPerIngest: number },
) {
  const { fake, sourceId, tenantId } = source;
  let crashed = false;
  let deadlinePassed = false;
  let takeover: Promise<unknown> | undefined;
  const matches = (f: { fn: string | null; nth: number }, call: Parameters<RpcHook>[0]) =>
    f.fn === null ? call.index === f.nth : call.fn === f.fn && call.indexOfFn === f.nth;

  const hook: RpcHook = async (call, send) => {
    if (crashed) return dropRequest(call);
    const ingest = call.fn === 'ingest_execution_page';
    switch (fault.kind) {
      case 'drop':
        if (matches(fault, call)) return dropRequest(call);
        break;
      case 'lose':
        if (matches(fault, call)) return loseResponse(call, send);
        break;
      case 'crash':
        if (call.index === fault.nth) {
          crashed = true;
          return fault.committed ? loseResponse(call, send) : dropRequest(call);
        }
        break;
      case 'mid-transaction':
        if (ingest && call.indexOfFn === fault.nth) {
          return failInsideTransaction(
            fault.point === 'state' ? sourceId : tenantId,
            fault.point,
            send,
          );
        }
        break;
      case 'budget':
        if (ingest && call.indexOfFn === fault.nth) {
          const response = await send();
          deadlinePassed = true;
          return response;
        }
        break;
      case 'overlap':
        if (ingest && call.indexOfFn === fault.nth) {
          const response = await send();
          await expireLease(sourceId);
          takeover = collect([source], { settings }).catch((error: unknown) => error);
          return response;
        }
        break;
    }
    return send();
  };

  let n8nRequests = 0;
  const n8nFetch: typeof fetch = (input, init) => {
    n8nRequests += 1;
    if (fault.kind === 'n8n' && n8nRequests === fault.nth)
      fake.failNext(fault.failure, fault.times);
    return globalThis.fetch(input, init);
  };

  const result = await collect([source], {
    db: faultyDb(rpcFetch(hook)),
    createN8nClient: fastN8nClient({ fetch: n8nFetch }),
    settings,
    now: () => (deadlinePassed ? Date.now() + 3_600_000 : Date.now()),
  }).catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
  await takeover;
  // A dead run's lease runs out; a failed source's backoff is skipped (as ignore_schedule does).
  await expireLease(sourceId);
  return result;
}

/** Seeds 1–100; FAULT_SEED=17 replays one seed, FAULT_SEEDS=1000 runs more. */
const SEEDS = process.env.FAULT_SEED
  ? [Number(process.env.FAULT_SEED)]
  : Array.from({ length: Number(process.env.FAULT_SEEDS ?? 100) }, (_, i) => i + 1);

// A seed is several whole collections with crashes between them; five run at once, so on a
// loaded machine one can take far longer than the default 30 s without anything being wrong.
describe.concurrent('exactly once under random faults at the database boundary', () => {
  it.for(SEEDS)('seed %i', { timeout: 180_000 }, async (seed) => {
    const rng = new Rng(seed);
    const source = await periodSource();
    const history = new History(rng, source.fake, 7200);
    const pageSize = rng.int(10, 50);
    // One to nine pages per ingest call (the default, PAGES_PER_INGEST, among them), from a
    // generator of its own (as `reserved` below).
    const pagesPerIngest = new Rng(seed + 2_000_003).int(1, PAGES_PER_INGEST + 1);
    const settings = { pageSize, pagesPerIngest };
    // 30–400 executions, most seeds small: many seeds beat a few big ones at finding bugs.
    history.add(30 + Math.floor(370 * rng.float() ** 3), rng.float() * 0.2);
    // Runs the runner allowed before the first collection (from a generator of their own,
    // so each seed's history and faults stay what they were): every billable execution
    // collected releases one, whatever the faults, and none is released twice.
    const reserved = new Rng(seed + 1_000_003).int(0, 40);
    await reserveRuns(source.tenantId, reserved);
    const log: string[] = [];

    const rounds = rng.int(3, 5);
    for (let round = 0; round < rounds; round++) {
      if (round > 0) {
        history.progress(0.4);
        if (rng.chance(0.7)) history.add(rng.int(1, 25), 0.15);
      }
      const pages = Math.ceil(source.fake.all().length / pageSize) + 1;
      const fault = randomFault(rng, pages);
      const result = await faultyRun(source, fault, settings);
      log.push(
        `round ${round}: ${describeFault(fault)} → ${
          result instanceof Error
            ? `threw ${result.message}`
            : `ok ${result.sourcesOk} failed ${result.sourcesFailed} deferred ${result.sourcesDeferred} ingested ${result.executionsIngested}`
        }`,
      );
      await expectConsistent(source, `seed ${seed} ${log.join('; ')}`);
    }

    // Everything finishes; clean runs until a whole walk from the top finds nothing new.
    history.progress(1, true);
    let converged = false;
    for (let run = 0; run < 5 && !converged; run++) {
      const before = await sourceState(source.sourceId);
      const result = await collect([source], { settings });
      log.push(`clean ${run}: ingested ${result.executionsIngested}`);
      expect(result.errors, `seed ${seed}: ${log.join('; ')}`).toEqual([]);
      expect(result.sourcesOk).toBe(1);
      const left = await leftovers(source.sourceId);
      converged =
        before?.walk_cursor == null &&
        result.executionsIngested === 0 &&
        left.open === 0 &&
        left.probes === 0;
    }
    const where = `seed ${seed} (page size ${pageSize}, ${pagesPerIngest} per ingest) ${log.join('; ')}`;
    expect(converged, where).toBe(true);
    await expectExact(source, where);
    expect(await releasedReservations(source.tenantId, 'collected'), `${where}: released`).toBe(
      Math.min(reserved, expectedBillable(source.fake)),
    );
    expect(
      (await gapsOf(source.sourceId)).filter((g) => g.kind !== 'pruned'),
      where,
    ).toEqual([]);
  });
});

/** A plain history: every execution final, a mix of billable and not. */
function addFinished(fake: FakeN8n, n: number, newestAgoSeconds = 60) {
  return fake.addMany(n, (i) => ({
    startedAt: recent(newestAgoSeconds + (n - i) * 5),
    mode: i % 6 === 0 ? 'manual' : i % 11 === 0 ? 'integrated' : i % 2 ? 'webhook' : 'trigger',
    status: i % 9 === 0 ? 'crashed' : i % 7 === 0 ? 'error' : i % 13 === 0 ? 'canceled' : 'success',
  }));
}

describe('overlapping runs', () => {
  it('two runs started together split the sources between them and ingest everything once', async () => {
    const sources = await Promise.all([periodSource(), periodSource(), periodSource()]);
    for (const [i, s] of sources.entries()) addFinished(s.fake, 60 + 25 * i, 600);

    /**
     * Two runs over `over`, held after their claims until both have claimed, so they truly
     * overlap. Claims skip locked and leased rows, so the runs may split the sources, but
     * never share one: each source is claimed by exactly one run (with one source, one run
     * claims nothing).
     */
    async function together(over: PeriodSource[]) {
      const bothClaimed = barrier(2);
      const claimed: string[][] = [[], []];
      const runs = await Promise.all(
        [0, 1].map((i) =>
          collect(over, {
            db: faultyDb(
              rpcFetch(async (call, send) => {
                const response = await send();
                if (call.fn === 'claim_collector_sources') await bothClaimed();
                return response;
              }),
            ),
            settings: { pageSize: 25 },
            onSourceEvent: (event) => {
              if (event.type === 'claimed') claimed[i] = event.sources.map((s) => s.source_id);
            },
          }),
        ),
      );
      const [a, b] = claimed as [string[], string[]];
      expect(a.filter((id) => b.includes(id))).toEqual([]);
      expect([...a, ...b].sort()).toEqual(over.map((s) => s.sourceId).sort());
      for (const run of runs) expect(run.errors).toEqual([]);
      return runs.reduce((n, run) => n + run.executionsIngested, 0);
    }

    // New sources (their first claim also creates their state rows), then known ones.
    expect(await together(sources)).toBe(60 + 85 + 110);
    for (const s of sources) await expectExact(s, 'first overlap');
    for (const s of sources) addFinished(s.fake, 30, 30);
    expect(await together(sources)).toBe(90);
    for (const s of sources) await expectExact(s, 'second overlap');
    const [one] = sources;
    addFinished(one.fake, 10, 10);
    expect(await together([one])).toBe(10);
    await expectExact(one, 'one source');
  });

  it('a run that loses its lease mid-walk stops (lease_lost); the run that took over counts everything once', async () => {
    const source = await periodSource();
    addFinished(source.fake, 200, 60);
    const aPaused = gate();
    const aResume = gate();
    const outcomes: { a?: SourceOutcome; b?: SourceOutcome } = {};
    const aIngestStatuses: number[] = [];

    // Run A stalls after its 2nd page, long enough for its lease to run out…
    const runA = collect([source], {
      db: faultyDb(
        rpcFetch(async (call, send) => {
          const response = await send();
          if (call.fn !== 'ingest_execution_page') return response;
          aIngestStatuses.push(response.status);
          if (call.indexOfFn === 2) {
            aPaused.open();
            await aResume.opened;
          }
          return response;
        }),
      ),
      settings: { pageSize: 20, pagesPerIngest: 1 },
      onSourceEvent: (event) => {
        if (event.type === 'done') outcomes.a = event.outcome;
      },
    });
    await aPaused.opened;
    await superuser().query(
      `update public.collector_source_state set lease_expires_at = now() - interval '1 second'
       where source_id = $1`,
      [source.sourceId],
    );

    // …run B takes the source over, and while B holds it (after B's 1st page) A wakes up.
    let aSummary: RunSummary | undefined;
    const runB = collect([source], {
      db: faultyDb(
        rpcFetch(async (call, send) => {
          const response = await send();
          if (call.fn === 'ingest_execution_page' && call.indexOfFn === 1) {
            aResume.open();
            aSummary = await runA;
          }
          return response;
        }),
      ),
      settings: { pageSize: 20, pagesPerIngest: 1 },
      onSourceEvent: (event) => {
        if (event.type === 'done') outcomes.b = event.outcome;
      },
    });
    const b = await runB;
    const a = aSummary ?? (await runA);

    // A's 3rd page was refused (PT409 → 409) and A stopped without releasing B's lease.
    expect(aIngestStatuses).toEqual([200, 200, 409]);
    expect(outcomes.a).toMatchObject({ status: 'lease_lost', pages: 2, executionsIngested: 40 });
    expect(a).toMatchObject({
      sourcesOk: 0,
      sourcesFailed: 0,
      sourcesDeferred: 0,
      sourcesLeaseLost: 1,
      errors: [],
    });
    const { rows: runRows } = await superuser().query(
      'select sources_lease_lost from public.collector_runs where id = $1',
      [a.runId],
    );
    expect(runRows[0]).toEqual({ sources_lease_lost: 1 });
    expect(outcomes.b).toMatchObject({ status: 'ok', executionsIngested: 160 });
    expect(b.errors).toEqual([]);
    const state = await sourceState(source.sourceId);
    expect(state).toMatchObject({ lease_token: null, consecutive_failures: 0 });
    await expectExact(source, 'after the takeover');

    // The next walks find nothing more.
    const next = await collect([source], { settings: { pageSize: 20 } });
    expect(next.executionsIngested).toBe(0);
    await expectExact(source, 'after the next run');
  });

  it('two transactions ingesting the same page for one source serialize on the lease row: the page counts once', async () => {
    const source = await periodSource();
    const page = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) => {
        const id = from + i;
        return {
          id,
          status: id % 5 === 0 ? 'error' : id % 7 === 0 ? 'canceled' : 'success',
          mode: id % 4 === 0 ? 'manual' : 'trigger',
          workflow_id: 'wf1',
          started_at: recent(2000 - id),
          stopped_at: recent(1990 - id),
          retry_of: null,
        };
      });
    const billable = (rows: ReturnType<typeof page>) =>
      rows.filter((r) => r.mode === 'trigger' && r.status !== 'canceled').length;

    const connect = async () => {
      const client = new pg.Client({ connectionString: stack.databaseUrl });
      client.on('error', () => {});
      await client.connect();
      await client.query('set role service_role');
      const { rows } = await client.query('select pg_backend_pid() as pid');
      return { client, pid: rows[0].pid as number };
    };
    const one = await connect();
    const two = await connect();
    try {
      const { rows: claimed } = await one.client.query(
        `select lease_token from public.claim_collector_sources(
           lease_seconds => 60, max_sources => 1, source_ids => array[$1]::uuid[], ignore_schedule => true)`,
        [source.sourceId],
      );
      const token = claimed[0].lease_token as string;
      const ingest = (client: pg.Client, rows: ReturnType<typeof page>, topId: number) =>
        client
          .query('select public.ingest_execution_page($1, $2, $3::jsonb, $4::jsonb) as summary', [
            source.sourceId,
            token,
            JSON.stringify(rows),
            JSON.stringify({ cursor: null, top_id: topId, done: true }),
          ])
          .then((r) => r.rows[0].summary as Record<string, number>);
      /** Both ingest `rows`, the second waiting on the first's lock until it ends as `firstEnds`. */
      const race = async (
        rows: ReturnType<typeof page>,
        topId: number,
        firstEnds: 'commit' | 'rollback',
      ) => {
        await one.client.query('begin');
        await two.client.query('begin');
        const byFirst = await ingest(one.client, rows, topId);
        const bySecond = ingest(two.client, rows, topId);
        await waitForLockWait({ pid: two.pid });
        await one.client.query(firstEnds);
        const summaries = { first: byFirst, second: await bySecond };
        await two.client.query('commit');
        return summaries;
      };

      // Both commit: the second sees the first's rows once it gets the lock.
      const first = page(1, 30);
      const { first: a, second: b } = await race(first, 30, 'commit');
      expect(a).toMatchObject({ received: 30, inserted: 30, billable: billable(first) });
      expect(b).toMatchObject({ received: 30, inserted: 0, billable: 0 });

      // The first rolls back: the second, waiting behind it, counts the page.
      const second = page(31, 20);
      const { second: d } = await race(second, 50, 'rollback');
      expect(d).toMatchObject({ received: 20, inserted: 20, billable: billable(second) });
    } finally {
      await one.client.end();
      await two.client.end();
    }

    expect(await duplicates(source.sourceId)).toEqual([]);
    expect(await countersVsRawRows(source.tenantId)).toEqual([]);
    expect(await storedExecutionIds(source.sourceId)).toEqual(
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    expect(await countersOf(source.tenantId)).toMatchObject({
      executions: 50,
      billable: billable(page(1, 50)),
    });
  });
});

describe('failure isolation', () => {
  it('one run over five tenants: four failing sources each record their own error, the healthy one counts exactly', async () => {
    const [healthy, malformed, unauthorized, failing, hanging] = (await Promise.all(
      Array.from({ length: 5 }, () => periodSource()),
    )) as [PeriodSource, PeriodSource, PeriodSource, PeriodSource, PeriodSource];
    const all = [healthy, malformed, unauthorized, failing, hanging];
    for (const s of all) addFinished(s.fake, 40, 600);
    const client = fastN8nClient({ timeoutMs: 200 });
    const settings = { pageSize: 25, concurrency: 5 };
    const first = await collect(all, { createN8nClient: client, settings });
    expect(first.errors).toEqual([]);
    for (const s of all) addFinished(s.fake, 25, 30);
    const before = new Map(
      await Promise.all(
        all.map(
          async (s) =>
            [
              s.sourceId,
              { ids: await storedExecutionIds(s.sourceId), counters: await countersOf(s.tenantId) },
            ] as const,
        ),
      ),
    );

    const [good1, good2] = malformed.fake.all().slice(-2);
    malformed.fake.failNext({
      kind: 'malformed',
      body: {
        data: [good2, good1, { ...good1, id: '999999', status: 'exploded' }],
        nextCursor: null,
      },
    });
    unauthorized.fake.failNext({ kind: 'status', status: 401, body: { message: 'Unauthorized' } });
    // Every attempt (the first and 2 retries) fails.
    failing.fake.failNext({ kind: 'status', status: 500, body: { message: 'boom' } }, 3);
    hanging.fake.failNext({ kind: 'hang' }, 3);

    const run = await collect(all, { createN8nClient: client, settings });
    const expectedErrors = new Map<string, RegExp>([
      [
        malformed.sourceId,
        /unreadable executions page: data\[2\]\.status: expected one of .*"exploded"/,
      ],
      [unauthorized.sourceId, /rejected the API key \(401\)/],
      [failing.sourceId, /failed with 500: boom/],
      [hanging.sourceId, /did not answer within 200 ms/],
    ]);
    expect(run).toMatchObject({ sourcesOk: 1, sourcesFailed: 4, sourcesDeferred: 0 });
    expect(run.errors.map((e) => e.source_id).sort()).toEqual([...expectedErrors.keys()].sort());
    for (const e of run.errors) {
      expect(e.error).toMatch(expectedErrors.get(e.source_id) as RegExp);
      expect(e.tenant_id).toBe(all.find((s) => s.sourceId === e.source_id)?.tenantId);
    }
    const { rows: runRows } = await superuser().query(
      'select sources_ok, sources_failed, errors from public.collector_runs where id = $1',
      [run.runId],
    );
    expect(runRows[0]).toMatchObject({ sources_ok: 1, sources_failed: 4 });
    expect(runRows[0].errors).toHaveLength(4);

    await expectExact(healthy, 'healthy source');
    for (const [sourceId, pattern] of expectedErrors) {
      const s = all.find((x) => x.sourceId === sourceId) as PeriodSource;
      const { rows } = await superuser().query(
        `select last_error, consecutive_failures, next_attempt_at > now() as backing_off,
                lease_token is null as released
         from public.collector_source_state where source_id = $1`,
        [sourceId],
      );
      expect(rows[0].last_error).toMatch(pattern);
      expect(rows[0]).toMatchObject({ consecutive_failures: 1, backing_off: true, released: true });
      // Nothing of the failed run was stored or counted.
      expect(await storedExecutionIds(sourceId)).toEqual(before.get(sourceId)?.ids);
      expect(await countersOf(s.tenantId)).toEqual(before.get(sourceId)?.counters);
      expect(await countersVsRawRows(s.tenantId)).toEqual([]);
    }

    // The faults clear: the next run collects every source exactly.
    const later = await collect(all, { createN8nClient: client, settings });
    expect(later.errors).toEqual([]);
    expect(later.sourcesOk).toBe(5);
    for (const s of all) {
      await expectExact(s, 'after the faults cleared');
      expect((await sourceState(s.sourceId)).consecutive_failures).toBe(0);
    }
  });
});

describe('pruning while a walk is in progress', () => {
  it.for(['budget', 'crash'] as const)(
    'a walk interrupted (%s) resumes from its cursor after n8n pruned: the gap is recorded, what exists is counted once',
    async (how) => {
      const source = await periodSource();
      const { fake, sourceId } = source;
      addFinished(fake, 50, 6000);
      await collect([source]);
      await collect([source]); // the second walk: the floor is now 50
      expect((await sourceState(sourceId)).floor_id).toBe('50');

      addFinished(fake, 300, 60);
      let ingests = 0;
      let deadlinePassed = false;
      let crashed = false;
      const interrupted = await collect([source], {
        db: faultyDb(
          rpcFetch(async (call, send) => {
            if (crashed) return dropRequest(call);
            if (call.fn !== 'ingest_execution_page' || ++ingests !== 3) return send();
            if (how === 'crash') {
              crashed = true;
              return loseResponse(call, send); // the 3rd page commits, then the process dies
            }
            const response = await send();
            deadlinePassed = true;
            return response;
          }),
        ),
        // Page by page, so the interruption falls after exactly three pages.
        settings: { pageSize: 20, pagesPerIngest: 1 },
        now: () => (deadlinePassed ? Date.now() + 3_600_000 : Date.now()),
      });
      expect(interrupted).toMatchObject(
        how === 'budget' ? { sourcesDeferred: 1 } : { sourcesFailed: 1 },
      );
      await expireLease(sourceId);
      const state = await sourceState(sourceId);
      expect(state.walk_cursor).not.toBeNull();
      const countedBeforePrune = await storedExecutionIds(sourceId);
      expect(countedBeforePrune).toHaveLength(50 + 60);

      const everything = new Map(fake.all().map((e) => [Number(e.id), e]));
      fake.prune({ keepNewest: 100 }); // keeps 251–350
      const resumed = await collect([source], { settings: { pageSize: 20 } });
      expect(resumed.errors).toEqual([]);
      expect(await gapsOf(sourceId)).toEqual([{ kind: 'pruned', from_id: 51, to_id: 250 }]);

      const stillThere = fake.all().map((e) => Number(e.id));
      const expectedIds = [...new Set([...countedBeforePrune, ...stillThere])].sort(
        (a, b) => a - b,
      );
      expect(await storedExecutionIds(sourceId)).toEqual(expectedIds);
      expect(await duplicates(sourceId)).toEqual([]);
      expect(await countersVsRawRows(source.tenantId)).toEqual([]);
      const billableModes = ['cli', 'retry', 'trigger', 'webhook', 'evaluation'];
      const expectedBillableCount = expectedIds
        .map((id) => everything.get(id))
        .filter((e) => e && billableModes.includes(e.mode) && e.status !== 'canceled').length;
      expect(await countersOf(source.tenantId)).toMatchObject({
        executions: expectedIds.length,
        billable: expectedBillableCount,
      });
      expect(await leftovers(sourceId)).toEqual({ open: 0, probes: 0 });

      // Later walks count nothing more.
      for (let i = 0; i < 2; i++) {
        const next = await collect([source], { settings: { pageSize: 20 } });
        expect(next.executionsIngested).toBe(0);
      }
      expect(await storedExecutionIds(sourceId)).toEqual(expectedIds);
      expect(await countersVsRawRows(source.tenantId)).toEqual([]);
    },
  );

  // The walk that finds a gap completes with floor_id := the previous high_water_id (the
  // floor lags one walk on purpose), so the next walk again ends at n8n's oldest execution
  // above that same floor and reports the same range (ingest_execution_page skips it).
  it('records a pruning gap once, not again on the next walk', async () => {
    const source = await periodSource();
    addFinished(source.fake, 50, 6000);
    await collect([source]);
    await collect([source]); // the floor is now 50
    addFinished(source.fake, 400, 60);
    source.fake.prune({ keepNewest: 100 });
    await collect([source]);
    expect(await gapsOf(source.sourceId)).toEqual([{ kind: 'pruned', from_id: 51, to_id: 350 }]);
    await collect([source]);
    expect(await gapsOf(source.sourceId)).toEqual([{ kind: 'pruned', from_id: 51, to_id: 350 }]);
  });
});
