import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { collectorHealthSchema } from '../../src/ops/collector-health.ts';
import { createStatusHandler } from '../../src/ops/status-handler.ts';
import { runCliWith } from '../support/cli.ts';
import { collect, createSource, type TestSource, useN8nServer } from '../support/collector.ts';
import { connectionReset, dropRequest, faultyDb, rpcFetch } from '../support/faults.ts';
import { recent } from '../support/fixtures.ts';
import { serviceClient, superuser } from '../support/stack.ts';

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

const cli = (args: string[], env: Record<string, string | undefined> = {}) =>
  runCliWith(args, { env });

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
    const { rows } = await superuser().query(
      `update public.collector_runs set started_at = now() - interval '20 minutes'
       where id = (select id from public.collector_runs where finished_at is null order by started_at desc limit 1)
       returning id, pages, executions_ingested::int`,
    );
    expect(rows[0]).toMatchObject({ pages: 2, executions_ingested: 20 });
    const killed = (await health()).killed_runs.find((r) => r.id === rows[0].id);
    expect(killed).toMatchObject({ pages: 2, executions_ingested: 20 });
    expect((await needsAttention()).join('\n')).toMatch(
      /collector runs? in the last day never finished \(killed or timed out/,
    );
  });
});

describe('a lease whose run is dead', () => {
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
        `source ${source.sourceId.slice(0, 8)} .* is held by a lease whose run is dead, for 3\\d min`,
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
