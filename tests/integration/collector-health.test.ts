import { randomBytes, randomUUID } from 'node:crypto';
import { HttpResponse, http } from 'msw';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import {
  BACKGROUND_FUNCTION_PATH,
  backgroundHandOff,
  collectorDependencies,
  runCollection,
} from '../../src/collector/from-config.ts';
import type { RunSummary } from '../../src/collector/run-collection.ts';
import { loadCollectorConfig } from '../../src/config/env.ts';
import { fail, ok } from '../../src/domain/result.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { collectorHealthSchema } from '../../src/ops/collector-health.ts';
import { createStatusHandler } from '../../src/ops/status-handler.ts';
import { cli } from '../support/cli.ts';
import {
  collect,
  createSource,
  fastN8nClient,
  keyring,
  type TestSource,
  testSettings,
  useN8nServer,
} from '../support/collector.ts';
import { connectionReset, dropRequest, faultyDb, rpcFetch } from '../support/faults.ts';
import { recent } from '../support/fixtures.ts';
import { claimSources, leasesOf } from '../support/leases.ts';
import { succeeded } from '../support/result.ts';
import { serviceClient, stack, superuser } from '../support/stack.ts';

/**
 * Health tells the truth about the collector: a scheduled run that finished with failures,
 * a run killed before it finished (with what it committed), a source held by a dead run's
 * lease and for how long, gaps since the last acknowledgement, a run that could not reach
 * the database (recorded on the source; the CLI exits 3).
 */

const server = useN8nServer();
const operatorSecret = 'o'.repeat(64);
const status = createStatusHandler({
  db: serviceClient(),
  operatorSecrets: [operatorSecret],
  log: silentLogger,
});

async function needsAttention(): Promise<string[]> {
  const response = await status(
    new Request('https://flowmeter.test/api/v1/status', {
      headers: { authorization: `Bearer ${operatorSecret}` },
    }),
  );
  return ((await response.json()) as { needs_attention: string[] }).needs_attention;
}

async function health(tenantIds?: string[]) {
  const { data, error } = await serviceClient().rpc(
    'collector_health',
    tenantIds ? { tenant_ids: tenantIds } : {},
  );
  expect(error).toBeNull();
  return collectorHealthSchema.parse(data);
}

describe('a killed run', () => {
  it('reads as killed, and the pages it committed are counted in its summary', async () => {
    const source = await createSource(server);
    source.fake.addMany(30, (i) => ({ startedAt: recent(300 - i) }));
    // The process dies after its second page committed: nothing after reaches the database.
    let dead = false;
    const db = faultyDb(
      rpcFetch(async (call, send) => {
        if (dead) return dropRequest(call);
        if (call.fn === 'ingest_execution_page' && call.indexOfFn === 2) {
          dead = true;
          const response = await send();
          await response.arrayBuffer();
          throw connectionReset('the process died');
        }
        return send();
      }),
    );
    const summary = await collect([source], {
      db,
      // One page per ingest call, so the process dies after exactly two pages committed.
      settings: { pageSize: 10, pagesPerIngest: 1 },
    }).catch((error: unknown) => error);
    expect(summary).not.toBeInstanceOf(Error);
    // This run by its id: other files' runs may be unfinished at the same moment.
    const { rows } = await superuser().query(
      `update public.collector_runs set started_at = now() - interval '20 minutes'
       where id = $1 and finished_at is null
       returning id, pages, executions_ingested::int`,
      [(summary as RunSummary).runId],
    );
    expect(rows[0]).toMatchObject({ pages: 2, executions_ingested: 20 });
    const killed = (await health()).killed_runs.find((r) => r.id === rows[0].id);
    expect(killed).toMatchObject({ pages: 2, executions_ingested: 20 });
    expect((await needsAttention()).join('\n')).toMatch(
      /collector runs? in the last day never finished \(killed or timed out/,
    );
  });
});

describe('a source no run takes', () => {
  it('is named once it has gone three cycles without a collection and without an error', async () => {
    const stalled = await createSource(server);
    const fresh = await createSource(server);
    const sourceStalled = /enabled sources? not collected for 30 minutes or more, without an error/;
    expect((await needsAttention()).join('\n')).not.toMatch(sourceStalled);
    await superuser().query(
      `update public.n8n_sources set created_at = now() - interval '31 minutes' where id = $1`,
      [stalled.sourceId],
    );
    try {
      expect((await needsAttention()).join('\n')).toMatch(sourceStalled);
      // Collected now: no longer stalled, and the fresh one never was.
      await collect([stalled, fresh]);
      expect((await needsAttention()).join('\n')).not.toMatch(sourceStalled);
    } finally {
      await superuser().query('update public.n8n_sources set enabled = false where id = $1', [
        stalled.sourceId,
      ]);
    }
  });
});

describe('a lease that ran out unreleased', () => {
  it('is named with how long it has been held', async () => {
    const source = await createSource(server);
    const { error } = await serviceClient().rpc('claim_collector_sources', {
      source_ids: [source.sourceId],
      ignore_schedule: true,
      lease_seconds: 60,
    });
    expect(error).toBeNull();
    await superuser().query(
      "update public.collector_source_state set lease_expires_at = now() - interval '30 minutes' where source_id = $1",
      [source.sourceId],
    );
    const lease = (await health([source.tenantId])).dead_leases;
    expect(lease).toEqual([expect.objectContaining({ source_id: source.sourceId })]);
    expect(lease[0]?.held_for_seconds).toBeGreaterThanOrEqual(30 * 60 + 60);
    const screen = await cli(['status', '--tenant', source.tenantId]);
    expect(screen.code).toBe(EXIT.failed);
    expect(screen.out).toMatch(
      new RegExp(
        `source ${source.sourceId.slice(0, 8)} .* is held by a lease that ran out unreleased \\(its run died, or never learned it held it\\), for 3\\d min`,
      ),
    );
  });
});

describe('gaps since the last acknowledgement', () => {
  async function sourceWithGaps(): Promise<TestSource> {
    const source = await createSource(server);
    source.fake.addMany(20, (i) => ({ startedAt: recent(300 - i) }));
    source.fake.remove('5');
    source.fake.remove('6');
    await collect([source]);
    return source;
  }

  it('are flagged until acknowledged, and flagged again when new ones appear', async () => {
    const source = await sourceWithGaps();
    const before = await cli(['status', '--tenant', source.tenantId, '--json']);
    expect(before.code).toBe(EXIT.failed);
    expect(JSON.parse(before.out).needs_attention).toEqual([
      expect.stringMatching(
        /^1 gap \(2 executions possibly uncounted: 2 missing\) since the last acknowledgement/,
      ),
    ]);

    const ack = await cli(['sources', 'acknowledge-gaps', '--source', source.sourceId, '--json']);
    expect(ack.code).toBe(EXIT.ok);
    expect(JSON.parse(ack.out)).toEqual({ acknowledged: 1 });
    expect((await cli(['status', '--tenant', source.tenantId])).code).toBe(EXIT.ok);

    source.fake.addMany(5, (i) => ({ startedAt: recent(100 - i) }));
    source.fake.remove('23');
    await collect([source]);
    const after = await health([source.tenantId]);
    expect(after.unacknowledged_gaps).toMatchObject({ gaps: 1, executions: 1 });
  });
});

describe('a scheduled run that finished with failures', () => {
  it('is recorded with its failures, which status reads (see tests/unit/collector-attention.test.ts)', async () => {
    const source = await createSource(server);
    source.fake.failNext({ kind: 'status', status: 401, body: { message: 'Unauthorized' } }, 5);
    const summary = await collect([source], { trigger: 'schedule' });
    expect(summary.sourcesFailed).toBe(1);
    // Other test files may run scheduled collections meanwhile: the run is read by its id.
    const { data } = await serviceClient().rpc('collector_health', {});
    const latest = collectorHealthSchema.parse(data).latest_scheduled_run;
    expect(latest?.started_at).toBeDefined();
    const { rows } = await superuser().query(
      'select sources_failed from public.collector_runs where id = $1',
      [summary.runId],
    );
    expect(rows[0].sources_failed).toBe(1);
  });
});

describe('a run that cannot reach the database', () => {
  it('records it on the source when the release gets through, and says so in its summary', async () => {
    const source = await createSource(server);
    source.fake.addMany(5, (i) => ({ startedAt: recent(100 - i) }));
    const db = faultyDb(
      rpcFetch(async (call, send) =>
        call.fn === 'ingest_execution_page' ? dropRequest(call) : send(),
      ),
    );
    const summary = await collect([source], { db });
    expect(summary).toMatchObject({ sourcesFailed: 1, databaseUnreachable: true });
    const { rows } = await superuser().query(
      `select st.last_error, r.database_unreachable
       from public.collector_source_state st, public.collector_runs r
       where st.source_id = $1 and r.id = $2`,
      [source.sourceId, summary.runId],
    );
    expect(rows[0]).toMatchObject({ database_unreachable: true });
    expect(rows[0].last_error).toMatch(
      /^the database could not be reached \(ingest_execution_page/,
    );
  });

  it('makes `flowmeter collect` exit 3', async () => {
    const down = await cli(['collect'], { SUPABASE_URL: 'http://127.0.0.1:9' });
    expect(down.code).toBe(EXIT.unavailable);
  });
});

describe('a background collection that ends badly', () => {
  /** Leases on new sources, as collect-usage hands them to collect-usage-background. */
  async function handedLeases(n: number) {
    const sources = await Promise.all(Array.from({ length: n }, () => createSource(server)));
    return leasesOf(
      await claimSources(
        sources.map((s) => s.sourceId),
        { leaseSeconds: 60 },
      ),
    );
  }

  const background = (
    leases: Array<{ source_id: string; lease_token: string }>,
    db = serviceClient(),
  ) =>
    runCollection({
      db,
      keyring,
      log: silentLogger,
      trigger: 'background',
      createN8nClient: fastN8nClient(),
      settings: testSettings,
      select: { leases },
    });

  async function backgroundRun(id: string) {
    return (await health()).failed_background_runs.latest.find((r) => r.id === id);
  }

  it('is flagged when it fails as a whole: its resume could not reach the database', async () => {
    const leases = await handedLeases(1);
    let runId: string | undefined;
    const db = faultyDb(
      rpcFetch(async (call, send) => {
        if (call.fn === 'resume_collector_sources') return dropRequest(call);
        const response = await send();
        if (call.fn === 'start_collector_run') runId = (await response.clone().json()) as string;
        return response;
      }),
    );
    const result = await background(leases, db);
    expect(result).toMatchObject({ ok: false, error: { code: 'unavailable' } });
    const run = await backgroundRun(runId as string);
    expect(run).toMatchObject({
      database_unreachable: true,
      failure: expect.stringMatching(/^resume_collector_sources failed/),
    });
    expect((await needsAttention()).join('\n')).toMatch(
      new RegExp(
        `a background collection \\(${run?.started_at.replace(/[+.]/g, '\\$&')}\\) could not reach the database \\(resume_collector_sources failed`,
      ),
    );
  });

  it('is flagged, and counts them, when every lease it was handed had been taken over', async () => {
    const leases = await handedLeases(2);
    const stale = leases.map((l) => ({ ...l, lease_token: randomUUID() }));
    const summary = await succeeded(background(stale));
    expect(summary).toMatchObject({ sourcesOk: 0, sourcesFailed: 0, sourcesLeaseLost: 2 });
    const { rows } = await superuser().query(
      'select sources_lease_lost, failure from public.collector_runs where id = $1',
      [summary.runId],
    );
    expect(rows[0]).toEqual({ sources_lease_lost: 2, failure: null });
    expect(await backgroundRun(summary.runId)).toMatchObject({ sources_lease_lost: 2 });
    expect((await needsAttention()).join('\n')).toMatch(
      /a background collection \([^)]+\) found 2 sources taken over by another run/,
    );
    const screen = await cli(['status']);
    expect(screen.code).toBe(EXIT.failed);
    expect(screen.out).toMatch(
      /Collector: .*, [1-9]\d* background runs ended badly since the latest scheduled one/,
    );
  });

  it('is not flagged when it ran clean', async () => {
    const summary = await succeeded(background(await handedLeases(1)));
    expect(summary).toMatchObject({ sourcesOk: 1, sourcesLeaseLost: 0 });
    expect(await backgroundRun(summary.runId)).toBeUndefined();
  });
});

describe('a database that hangs', () => {
  it('is cut at DB_TIMEOUT_MS: the source fails as unreachable, and the run says so', async () => {
    const source = await createSource(server);
    source.fake.addMany(5, (i) => ({ startedAt: recent(100 - i) }));
    const config = loadCollectorConfig({
      SUPABASE_URL: stack.supabaseUrl,
      SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
      FLOWMETER_ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`,
      DB_TIMEOUT_MS: '1000',
    });
    // The ingest call is accepted and never answered, as by a hung PostgREST.
    const hung = rpcFetch(async (call, send) =>
      call.fn === 'ingest_execution_page' ? new Promise<Response>(() => {}) : send(),
    );
    const deps = collectorDependencies(config, { log: silentLogger, fetch: hung });
    const summary = await succeeded(
      runCollection({
        ...deps,
        keyring,
        createN8nClient: fastN8nClient(),
        settings: testSettings,
        trigger: 'manual',
        select: { sourceIds: [source.sourceId] },
      }),
    );
    expect(summary).toMatchObject({ sourcesFailed: 1, databaseUnreachable: true });
    expect(summary.errors[0]?.error).toMatch(
      /^the database could not be reached \(ingest_execution_page: TimeoutError: no answer from the database within 1000 ms/,
    );
    const { rows } = await superuser().query(
      'select database_unreachable from public.collector_runs where id = $1',
      [summary.runId],
    );
    expect(rows[0]).toEqual({ database_unreachable: true });
  });
});

describe('hand-offs to collect-usage-background', () => {
  const siteUrl = 'https://flowmeter-hand-off.example.test';
  const handOffConfig = (env: Record<string, string> = {}) =>
    loadCollectorConfig({
      SUPABASE_URL: stack.supabaseUrl,
      SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
      FLOWMETER_ENCRYPTION_KEYS: `k1:${keyring.keys.get('k1')?.toString('base64')}`,
      FLOWMETER_INTERNAL_SECRET: 's'.repeat(64),
      URL: siteUrl,
      ...env,
    });
  const escaped = (text: string) => text.replace(/[+.()/]/g, '\\$&');

  /**
   * A scheduled run over four sources of which its own share is two (one worker, two
   * seconds, a clock standing still): the other two go out as one slice, answered by `answer`.
   */
  async function fanOutAnswered(answer: () => Response, env: Record<string, string> = {}) {
    let handOffs = 0;
    server.use(
      http.post(`${siteUrl}${BACKGROUND_FUNCTION_PATH}`, () => {
        handOffs += 1;
        return answer();
      }),
    );
    const sources: TestSource[] = [];
    for (let i = 0; i < 4; i++) {
      const source = await createSource(server);
      source.fake.addMany(2, (j) => ({ startedAt: recent(60 - j) }));
      sources.push(source);
    }
    const started = Date.now();
    const summary = await collect(sources, {
      trigger: 'schedule',
      settings: { concurrency: 1, budgetMs: 2000, sliceSources: 5 },
      now: () => started,
      budgetSignal: new AbortController().signal,
      handOff: backgroundHandOff(handOffConfig(env), silentLogger),
    });
    return { summary, run: await handOffRecord(summary.runId), sources, handOffs };
  }

  async function handOffRecord(runId: string) {
    const { rows } = await superuser().query(
      'select started_at, sources_handoff_refused, handoff_error from public.collector_runs where id = $1',
      [runId],
    );
    return rows[0];
  }

  /** A source whose n8n has `n` recent executions. */
  async function sourceWith(n: number): Promise<TestSource> {
    const source = await createSource(server);
    source.fake.addMany(n, (i) => ({ startedAt: recent(60 - i) }));
    return source;
  }

  /** A scheduled run whose clock is past the budget once it has started: every walk is deferred. */
  function collectDeferred(sources: TestSource[], overrides: Parameters<typeof collect>[1] = {}) {
    const started = Date.now();
    let calls = 0;
    return collect(sources, {
      trigger: 'schedule',
      now: () => (calls++ === 0 ? started : started + 60_000),
      budgetSignal: new AbortController().signal,
      ...overrides,
      settings: { budgetMs: 2000, ...overrides.settings },
    });
  }

  async function heldLeases(sources: TestSource[]) {
    const { rows } = await superuser().query(
      'select count(*)::int as n from public.collector_source_state where source_id = any ($1::uuid[]) and lease_token is not null',
      [sources.map((s) => s.sourceId)],
    );
    return rows[0].n;
  }

  it('a fan-out the background function refuses (401) is recorded on the run, and status says to align the secret', async () => {
    const { summary, run, sources, handOffs } = await fanOutAnswered(
      () => new HttpResponse('unauthorized', { status: 401 }),
    );
    expect(handOffs).toBe(1);
    expect(summary).toMatchObject({ sourcesOk: 2, sourcesHandOffRefused: 2 });
    expect(run).toMatchObject({
      sources_handoff_refused: 2,
      handoff_error: `${siteUrl}${BACKGROUND_FUNCTION_PATH} answered 401`,
    });
    // The refused slice is freed at once: the next run collects it.
    expect(await heldLeases(sources)).toBe(0);
    const started = (await health()).latest_scheduled_run?.started_at ?? '';
    expect((await needsAttention()).join('\n')).toMatch(
      new RegExp(
        `the latest scheduled collection \\(${escaped(started)}\\) could not hand 2 sources to collect-usage-background \\(${escaped(`${siteUrl}${BACKGROUND_FUNCTION_PATH}`)} answered 401\\): set the same FLOWMETER_INTERNAL_SECRET`,
      ),
    );
  });

  it('a background function that cannot be reached is recorded, and status says to check URL', async () => {
    const { summary, run } = await fanOutAnswered(() => HttpResponse.error());
    expect(summary.sourcesHandOffRefused).toBe(2);
    expect(run.sources_handoff_refused).toBe(2);
    expect(run.handoff_error).toMatch(/collect-usage-background could not be reached: /);
    expect((await needsAttention()).join('\n')).toMatch(
      /could not hand 2 sources to collect-usage-background \(.*could not be reached: .*\): check that URL is the site URL/,
    );
  });

  it('without a background function configured, nothing is handed over and nothing reads as refused', async () => {
    const { summary, run, sources, handOffs } = await fanOutAnswered(
      () => new HttpResponse(null, { status: 202 }),
      { FLOWMETER_INTERNAL_SECRET: '' },
    );
    expect(handOffs).toBe(0);
    expect(summary).toMatchObject({ sourcesOk: 2, sourcesHandOffRefused: 0, handOffError: null });
    expect(run).toMatchObject({ sources_handoff_refused: 0, handoff_error: null });
    expect(await heldLeases(sources)).toBe(0);
  });

  it('a walk unfinished at the budget whose hand-off is refused is recorded too', async () => {
    server.use(
      http.post(
        `${siteUrl}${BACKGROUND_FUNCTION_PATH}`,
        () => new HttpResponse('forbidden', { status: 403 }),
      ),
    );
    const source = await sourceWith(3);
    const summary = await collectDeferred([source], {
      handOff: backgroundHandOff(handOffConfig(), silentLogger),
    });
    expect(summary).toMatchObject({ sourcesDeferred: 1, sourcesHandOffRefused: 1 });
    expect(await handOffRecord(summary.runId)).toMatchObject({
      sources_handoff_refused: 1,
      handoff_error: `${siteUrl}${BACKGROUND_FUNCTION_PATH} answered 403`,
    });
    expect(await heldLeases([source])).toBe(0);
  });

  it('a hand-off still unanswered when the run must end is cut, counted as refused, and the run records its end', async () => {
    const cut = new AbortController();
    server.use(
      http.post(`${siteUrl}${BACKGROUND_FUNCTION_PATH}`, async () => {
        cut.abort(); // the run reaches its cut while the background function says nothing
        return new Promise<Response>(() => {});
      }),
    );
    const source = await sourceWith(3);
    const summary = await collectDeferred([source], {
      cutSignal: cut.signal,
      handOff: backgroundHandOff(handOffConfig(), silentLogger),
    });
    expect(summary).toMatchObject({ sourcesDeferred: 1, sourcesHandOffRefused: 1 });
    const run = await handOffRecord(summary.runId);
    expect(run).toMatchObject({
      sources_handoff_refused: 1,
      handoff_error: `${siteUrl}${BACKGROUND_FUNCTION_PATH} did not answer before the run had to end`,
    });
    expect(await heldLeases([source])).toBe(0);
  });

  it('walks unfinished at the budget are handed off side by side; a refused slice is freed, the others stay handed', async () => {
    const sources = [await sourceWith(2), await sourceWith(2), await sourceWith(2)];
    const refusedSource = sources[1] as TestSource;
    const events: string[] = [];
    const summary = await collectDeferred(sources, {
      settings: { sliceSources: 1 },
      handOff: async (_runId, leases) => {
        const id = leases[0]?.source_id;
        events.push(`start ${id}`);
        await new Promise((resolve) => setImmediate(resolve));
        events.push(`end ${id}`);
        return id === refusedSource.sourceId
          ? fail('refused', 'the background function answered 503')
          : ok(null);
      },
    });
    // Every hand-off had started before the first one ended.
    expect(events.slice(0, 3).every((e) => e.startsWith('start '))).toBe(true);
    expect(events).toHaveLength(6);
    expect(summary).toMatchObject({
      sourcesDeferred: 3,
      sourcesHandOffRefused: 1,
      handOffError: 'the background function answered 503',
    });
    // The refused slice is free for the next run; the handed ones keep their leases.
    expect(await heldLeases([refusedSource])).toBe(0);
    expect(await heldLeases(sources.filter((s) => s !== refusedSource))).toBe(2);
  });
});
