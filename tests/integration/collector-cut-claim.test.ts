import { describe, expect, it } from 'vitest';
import type { HandOff, Lease, RunSummary } from '../../src/collector/run-collection.ts';
import { ok } from '../../src/domain/result.ts';
import { type Logger, silentLogger } from '../../src/observability/logger.ts';
import { recordedRun } from '../../src/ops/scheduled-run.ts';
import {
  collect,
  createSource,
  expectCollectedExactly,
  sourceState,
  storedExecutionIds,
  type TestSource,
  useN8nServer,
} from '../support/collector.ts';
import {
  expireLease,
  faultyDb,
  gate,
  hangUntilAborted,
  holdClaims,
  loseResponse,
  type RpcHook,
  rpcFetch,
  useFaultTriggers,
  waitForLockWait,
} from '../support/faults.ts';
import { recent } from '../support/fixtures.ts';
import { succeeded } from '../support/result.ts';
import { serviceClient, superuser, uniqueId } from '../support/stack.ts';
import { statusEndpoint } from '../support/status.ts';

/**
 * A fan-out claim cut at the end of its run whose transaction commits anyway: its sources
 * are leased to a run that never learns it holds them. Nothing is counted twice or lost:
 * no run takes them while the lease lasts, health names the lease once it has outlived its
 * run, and the first run after that collects them exactly.
 */

const server = useN8nServer();
const status = statusEndpoint();

useFaultTriggers();

/**
 * A scheduled run's settings whose own share is one source (one worker, one second) and whose
 * fan-out claims two at a time; its clock stands still, so the budget never decides.
 */
const fanOutSettings = { concurrency: 1, budgetMs: 1000, sliceSources: 2 };

async function threeSources(): Promise<TestSource[]> {
  const sources: TestSource[] = [];
  for (let i = 0; i < 3; i++) {
    const source = await createSource(server);
    source.fake.addMany(6 + i, (j) => ({
      startedAt: recent(300 - j),
      mode: j % 3 === 0 ? 'manual' : 'trigger',
      status: j % 4 === 0 ? 'error' : 'success',
    }));
    sources.push(source);
  }
  return sources;
}

/**
 * Hands leases over as collect-usage-background is handed them: answered at once, the
 * background run collecting them after. `settled` waits for every such run.
 */
function backgroundWorkers() {
  const handed: Lease[] = [];
  const runs: Array<Promise<RunSummary>> = [];
  const handOff: HandOff = async (_runId, leases) => {
    handed.push(...leases);
    runs.push(collect([], { trigger: 'background', select: { leases } }));
    return ok(null);
  };
  return { handOff, handed, settled: () => Promise.all(runs) };
}

/** A scheduled run over `sources`, recorded as collect-usage records it. */
function scheduledRun(
  sources: TestSource[],
  functionName: string,
  options: {
    db?: ReturnType<typeof serviceClient>;
    cut?: AbortSignal;
    handOff: HandOff;
    claimed?: string[];
    onDone?: () => void;
    log?: Logger;
  },
) {
  const started = Date.now();
  const log = options.log ?? silentLogger;
  return recordedRun({ db: serviceClient(), functionName, log }, async () =>
    ok(
      await collect(sources, {
        log,
        trigger: 'schedule',
        ...(options.db ? { db: options.db } : {}),
        now: () => started,
        budgetSignal: new AbortController().signal,
        ...(options.cut ? { cutSignal: options.cut } : {}),
        handOff: options.handOff,
        settings: fanOutSettings,
        onSourceEvent: (event) => {
          if (event.type === 'claimed') {
            options.claimed?.push(...event.sources.map((s) => s.source_id));
          }
          if (event.type === 'done') options.onDone?.();
        },
      }),
    ),
  ).then(succeeded);
}

/** A scheduled run beside the cut one, with what it claimed and handed off, once all is done. */
async function anotherRun(sources: TestSource[], functionName: string) {
  const claimed: string[] = [];
  const workers = backgroundWorkers();
  const summary = await scheduledRun(sources, functionName, { handOff: workers.handOff, claimed });
  await workers.settled();
  return { summary, claimed, handed: workers.handed };
}

/** Every line logged at warn or error, with its level, whatever child logger wrote it. */
function recordingLog() {
  const lines: Array<{ level: 'warn' | 'error'; message: string | undefined }> = [];
  const log: Logger = {
    ...silentLogger,
    warn: (_fields, message) => lines.push({ level: 'warn', message }),
    error: (_fields, message) => lines.push({ level: 'error', message }),
    child: () => log,
  };
  return { log, lines };
}

async function collectorRun(runId: string) {
  const { rows } = await superuser().query(
    `select finished_at, sources_ok, sources_failed, sources_deferred, sources_lease_lost,
            database_unreachable, failure, errors, sources_handoff_refused, handoff_error
     from public.collector_runs where id = $1`,
    [runId],
  );
  return rows[0];
}

async function scheduledRunRow(functionName: string) {
  const { rows } = await superuser().query(
    'select finished_at, ok, error from public.scheduled_runs where function_name = $1',
    [functionName],
  );
  return rows;
}

/** Who holds each source's lease now (null: free), read as the superuser. */
async function leaseHolders(sources: TestSource[]) {
  const { rows } = await superuser().query(
    `select source_id, lease_token, lease_expires_at > now() as live
     from public.collector_source_state where source_id = any ($1::uuid[])`,
    [sources.map((s) => s.sourceId)],
  );
  return new Map(rows.map((r) => [r.source_id as string, r]));
}

async function findings(sources: TestSource[]): Promise<string[]> {
  const response = await status.forTenants(sources.map((s) => s.tenantId));
  return ((await response.json()) as { needs_attention: string[] }).needs_attention;
}

const deadLeaseFinding = (source: TestSource) =>
  new RegExp(
    `^source ${source.sourceId.slice(0, 8)} \\(https://[^)]+\\) is held by a lease that ran out unreleased \\(its run died, or never learned it held it\\), for 1 min: the next run takes it over`,
  );

/**
 * How the fan-out's first claim (the run's second) reaches the database, commits, and gets
 * no answer. `ownDone` resolves once the run's own source is done, so a cut falls on the
 * claim alone.
 */
type Injection = (
  call: Parameters<RpcHook>[0],
  send: () => Promise<Response>,
  context: { sourceIds: string[]; cut: AbortController; ownDone: Promise<void> },
) => Promise<{ response: Promise<Response>; committed: () => Promise<void> }>;

/**
 * What the run that got no answer records: a claim cut at the end of the run is an expected
 * stop, logged as a warning; one unanswered before any cut is a database that did not
 * answer, as the run says of any other call.
 */
interface Recorded {
  databaseUnreachable: boolean;
  logged: { level: 'warn' | 'error'; message: RegExp };
}

const cutRecord: Recorded = {
  databaseUnreachable: false,
  logged: { level: 'warn', message: /^fan-out cut while claiming: .* once the lease runs out/ },
};

const INJECTIONS: Array<[string, Injection, Recorded]> = [
  [
    'is held in the database past the cut, and commits after its client gave up',
    async (_call, send, { sourceIds, cut, ownDone }) => {
      const held = await holdClaims(sourceIds);
      const response = send();
      response.catch(() => {});
      await waitForLockWait({ queryLike: 'claim_collector_sources' });
      await ownDone;
      cut.abort();
      return { response, committed: held.commit };
    },
    cutRecord,
  ],
  [
    'commits, and its answer is held until the cut ends the request',
    async (call, send, { cut, ownDone }) => {
      await (await send()).arrayBuffer();
      await ownDone;
      cut.abort();
      return { response: hangUntilAborted(call), committed: async () => {} };
    },
    cutRecord,
  ],
  [
    'commits, and its answer is lost on the way back before any cut',
    async (call, send) => ({ response: loseResponse(call, send), committed: async () => {} }),
    {
      databaseUnreachable: true,
      logged: {
        level: 'error',
        message: /^fan-out stopped, its claim unanswered: .* once the lease runs out/,
      },
    },
  ],
];

describe.each(INJECTIONS)('a fan-out claim that %s', (_, inject, recorded) => {
  it('leases its sources to no run until the lease expires; then the next run collects them exactly once', async () => {
    const sources = await threeSources();
    const sourceIds = sources.map((s) => s.sourceId);
    const functionName = uniqueId('collect-usage-cut-claim');

    // 1. The cut run: its own source is collected, the fan-out's claim is cut in flight.
    const cut = new AbortController();
    const ownDone = gate();
    let committed: () => Promise<void> = async () => {};
    const claimedByCutRun: string[] = [];
    const cutRunWorkers = backgroundWorkers();
    const cutRunLog = recordingLog();
    const cutRun = await scheduledRun(sources, functionName, {
      log: cutRunLog.log,
      db: faultyDb(
        rpcFetch(async (call, send) => {
          if (call.fn !== 'claim_collector_sources' || call.indexOfFn !== 2) return send();
          const injected = await inject(call, send, {
            // The sources the fan-out claims: those the run did not claim for itself first.
            sourceIds: sourceIds.filter((id) => !claimedByCutRun.includes(id)),
            cut,
            ownDone: ownDone.opened,
          });
          committed = injected.committed;
          return injected.response;
        }),
      ),
      cut: cut.signal,
      handOff: cutRunWorkers.handOff,
      claimed: claimedByCutRun,
      onDone: () => ownDone.open(),
    });

    // 1b. (b) A run while the claim may not have committed yet (the first injection holds it in
    // the database) passes over the rows it has locked: it neither waits for them nor takes
    // them, and fans nothing out.
    const during = await anotherRun(sources, `${functionName}-during`);
    expect(during.claimed).toEqual(claimedByCutRun);
    expect(during.handed).toEqual([]);
    expect(during.summary).toMatchObject({
      sourcesOk: 1,
      sourcesLeaseLost: 0,
      executionsIngested: 0,
    });
    await committed();

    expect(claimedByCutRun).toHaveLength(1);
    const [ownId] = claimedByCutRun;
    const own = sources.find((s) => s.sourceId === ownId) as TestSource;
    const orphaned = sources.filter((s) => s !== own);
    expect(cutRunWorkers.handed).toEqual([]);
    // (a) Not a failure of the run as a whole: it ended, with what it did; a cut is no outage.
    expect(cutRun).toMatchObject({
      sourcesOk: 1,
      sourcesFailed: 0,
      sourcesDeferred: 0,
      sourcesLeaseLost: 0,
      databaseUnreachable: recorded.databaseUnreachable,
      errors: [],
      sourcesHandOffRefused: 0,
      handOffError: null,
      executionsIngested: own.fake.all().length,
    });
    expect(await collectorRun(cutRun.runId)).toMatchObject({
      finished_at: expect.any(Date),
      sources_ok: 1,
      sources_failed: 0,
      sources_lease_lost: 0,
      database_unreachable: recorded.databaseUnreachable,
      failure: null,
      errors: [],
      sources_handoff_refused: 0,
      handoff_error: null,
    });
    expect(await scheduledRunRow(functionName)).toEqual([
      { finished_at: expect.any(Date), ok: true, error: null },
    ]);
    expect(cutRunLog.lines).toEqual([
      { level: recorded.logged.level, message: expect.stringMatching(recorded.logged.message) },
    ]);
    // The claim committed: the other two are leased, to tokens no run holds.
    const afterCut = await leaseHolders(sources);
    expect(afterCut.get(own.sourceId)?.lease_token).toBeNull();
    for (const source of orphaned) {
      expect(afterCut.get(source.sourceId)).toMatchObject({
        lease_token: expect.any(String),
        live: true,
      });
    }
    // A live lease is not yet a finding: health cannot tell it from one a run is working.
    expect(await findings(sources)).toEqual([]);

    // 2. (b) A run before the lease expires leaves the leased sources alone.
    const before = await anotherRun(sources, `${functionName}-before`);
    expect(before.claimed).toEqual([own.sourceId]);
    expect(before.handed).toEqual([]);
    expect(before.summary).toMatchObject({
      sourcesOk: 1,
      sourcesLeaseLost: 0,
      executionsIngested: 0,
    });
    for (const source of orphaned) {
      expect(source.fake.requests).toEqual([]);
      expect(await storedExecutionIds(source.sourceId)).toEqual([]);
      expect((await leaseHolders([source])).get(source.sourceId)).toEqual(
        afterCut.get(source.sourceId),
      );
    }

    // 3. The lease runs out: health names each source with its advice…
    for (const source of orphaned) await expireLease(source.sourceId);
    const named = await findings(sources);
    expect(named).toHaveLength(2);
    for (const source of orphaned) {
      expect(named.filter((line) => deadLeaseFinding(source).test(line))).toHaveLength(1);
    }

    // …(c) and the next run collects them: every execution in n8n counted once.
    const afterWorkers = backgroundWorkers();
    const after = await scheduledRun(sources, `${functionName}-after`, {
      handOff: afterWorkers.handOff,
    });
    const background = await afterWorkers.settled();
    const runs = [after, ...background];
    expect(runs.flatMap((run) => run.errors)).toEqual([]);
    expect(runs.reduce((n, run) => n + run.sourcesOk, 0)).toBe(3);
    expect(runs.reduce((n, run) => n + run.executionsIngested, 0)).toBe(
      orphaned.reduce((n, s) => n + s.fake.all().length, 0),
    );
    for (const source of sources) {
      await expectCollectedExactly(source);
      expect(await sourceState(source.sourceId)).toMatchObject({
        lease_token: null,
        consecutive_failures: 0,
      });
    }
    expect(await findings(sources)).toEqual([]);
  });
});
