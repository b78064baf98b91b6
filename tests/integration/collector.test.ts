import { describe, expect, it } from 'vitest';
import {
  collect,
  countersOf,
  createSource,
  expectCollectedExactly,
  sourceState,
  storedExecutionIds,
  useN8nServer,
} from '../support/collector.ts';
import { faultyDb, rpcFetch } from '../support/faults.ts';
import { createPlan, recent, setPlan } from '../support/fixtures.ts';
import { superuser } from '../support/stack.ts';

const server = useN8nServer();

describe('collector', () => {
  it('ingests 10,000 executions across 3 tenants exactly once; a second run ingests nothing', async () => {
    const sources = await Promise.all([
      createSource(server),
      createSource(server),
      createSource(server),
    ]);
    const sizes = [5000, 3000, 2000];
    sources.forEach((source, s) => {
      const n = sizes[s] as number;
      source.fake.addMany(n, (i) => ({
        startedAt: recent(n - i + 60),
        // a mix: mostly billable, some manual runs and errors, a few sub-workflows
        mode: i % 10 === 0 ? 'manual' : i % 17 === 0 ? 'integrated' : 'trigger',
        status: i % 7 === 0 ? 'error' : i % 29 === 0 ? 'canceled' : 'success',
      }));
    });

    const first = await collect(sources);
    expect(first.errors).toEqual([]);
    expect(first.sourcesOk).toBe(3);
    expect(first.sourcesFailed).toBe(0);
    expect(first.executionsIngested).toBe(10_000);

    for (const [s, source] of sources.entries()) {
      expect(source.fake.all()).toHaveLength(sizes[s] as number);
      await expectCollectedExactly(source);
      const counters = await countersOf(source.tenantId);
      expect(counters.billable_success + counters.billable_failed).toBe(counters.billable);
    }

    const second = await collect(sources);
    expect(second.executionsIngested).toBe(0);
    expect(second.billableCounted).toBe(0);
    for (const [s, source] of sources.entries()) {
      expect((await countersOf(source.tenantId)).executions).toBe(sizes[s]);
    }

    const { rows } = await superuser().query(
      'select trigger, sources_ok, executions_ingested::int from public.collector_runs where id = $1',
      [first.runId],
    );
    expect(rows[0]).toEqual({ trigger: 'manual', sources_ok: 3, executions_ingested: 10_000 });
  });

  it('counts running and waiting executions only when they finish, including a lower id finishing last', async () => {
    const source = await createSource(server);
    const { fake } = source;
    const longRun = fake.add({ status: 'running', startedAt: recent(600) });
    const waiting = fake.add({ status: 'waiting', startedAt: recent(590) });
    const queued = fake.add({ status: 'new', startedAt: null });
    fake.addMany(20, (i) => ({ startedAt: recent(500 - i) }));

    // A new source's first walk lists with startedAfter, which hides queued and running
    // executions; its second walk repeats the backfill unfiltered and finds them.
    await collect([source]);
    await collect([source]);
    expect((await countersOf(source.tenantId)).billable).toBe(20);
    const open = await superuser().query(
      'select execution_id::int as id, status from public.open_executions where source_id = $1 order by 1',
      [source.sourceId],
    );
    // The running one is not listed by n8n at all: the collector found it through the hole.
    expect(open.rows).toEqual([
      { id: Number(longRun.id), status: 'running' },
      { id: Number(waiting.id), status: 'waiting' },
      { id: Number(queued.id), status: 'new' },
    ]);

    // Many newer executions later, the lowest id finishes last.
    fake.addMany(300, (i) => ({ startedAt: recent(400 - i) }));
    fake.update(waiting.id, { status: 'success' });
    fake.update(queued.id, { status: 'error' });
    await collect([source]);
    expect((await countersOf(source.tenantId)).billable).toBe(322);

    fake.update(longRun.id, { status: 'success' });
    await collect([source]);
    await collect([source]);
    expect((await countersOf(source.tenantId)).billable).toBe(323);
    expect(await storedExecutionIds(source.sourceId)).toHaveLength(323);
    const left = await superuser().query(
      'select count(*)::int as n from public.open_executions where source_id = $1',
      [source.sourceId],
    );
    expect(left.rows[0].n).toBe(0);
  });

  it('never counts non-billable modes or statuses, and follows the plan when it says otherwise', async () => {
    const source = await createSource(server);
    source.fake.add({ mode: 'manual', startedAt: recent(100) });
    source.fake.add({ mode: 'integrated', startedAt: recent(99) });
    source.fake.add({ mode: 'error', startedAt: recent(98) });
    source.fake.add({ mode: 'internal', startedAt: recent(97) });
    source.fake.add({ mode: 'trigger', status: 'canceled', startedAt: recent(96) });
    source.fake.add({ mode: 'webhook', status: 'crashed', startedAt: recent(95) });
    source.fake.add({ mode: 'retry', status: 'error', startedAt: recent(94) });
    await collect([source]);
    expect(await countersOf(source.tenantId)).toEqual({
      executions: 7,
      billable: 2,
      billable_success: 0,
      billable_failed: 2,
    });

    // A plan that bills manual runs too.
    const plan = await createPlan();
    await setPlan({
      id: plan.id,
      name: 'Bills manual',
      included_executions: 100,
      billable_modes: ['manual', 'trigger'],
    });
    const other = await createSource(server, { planId: plan.id });
    other.fake.add({ mode: 'manual', startedAt: recent(50) });
    other.fake.add({ mode: 'webhook', startedAt: recent(49) });
    await collect([other]);
    expect((await countersOf(other.tenantId)).billable).toBe(1);
  });

  it('assigns executions to the tenant billing period containing their start (Stripe bounds)', async () => {
    const source = await createSource(server);
    const periodStart = new Date(Date.now() - 5 * 86400_000);
    const periodEnd = new Date(periodStart.getTime() + 30 * 86400_000);
    await superuser().query(
      'update public.tenants set current_period_start = $2, current_period_end = $3 where id = $1',
      [source.tenantId, periodStart, periodEnd],
    );
    source.fake.add({ startedAt: recent(3600) }); // inside the current period
    source.fake.add({ startedAt: new Date(periodStart.getTime() + 1000).toISOString() });
    await collect([source]);
    const { rows } = await superuser().query(
      'select period_start, period_end, billable::int from public.usage_counters where tenant_id = $1',
      [source.tenantId],
    );
    expect(rows).toEqual([{ period_start: periodStart, period_end: periodEnd, billable: 2 }]);
  });

  it('detects and reports a pruning gap', async () => {
    const source = await createSource(server);
    source.fake.addMany(50, (i) => ({ startedAt: recent(5000 - i) }));
    await collect([source]);
    await collect([source]); // second walk: the floor is now the first walk's top
    expect((await sourceState(source.sourceId)).floor_id).toBe('50');

    // 400 more executions arrive, and n8n prunes to the newest 100 before the next run.
    source.fake.addMany(400, (i) => ({ startedAt: recent(4000 - i) }));
    source.fake.prune({ keepNewest: 100 });
    await collect([source]);

    const { rows } = await superuser().query(
      'select kind, from_id::int, to_id::int from public.collection_gaps where source_id = $1',
      [source.sourceId],
    );
    expect(rows).toEqual([{ kind: 'pruned', from_id: 51, to_id: 350 }]);
    expect((await countersOf(source.tenantId)).executions).toBe(150);
  });

  it('an ingest summary with a renamed key fails the source with a reason, not a count of undefined', async () => {
    const source = await createSource(server);
    source.fake.addMany(3, (i) => ({ startedAt: recent(300 - i) }));
    const result = await collect([source], {
      db: faultyDb(
        rpcFetch(async (call, send) => {
          if (call.fn !== 'ingest_execution_page') return send();
          const { inserted, ...rest } = (await (await send()).json()) as Record<string, unknown>;
          return Response.json({ ...rest, inserted_rows: inserted });
        }),
      ),
    });
    expect(result.sourcesFailed).toBe(1);
    expect(result.errors.map((e) => e.error).join('\n')).toMatch(
      /ingest_execution_page answered in a shape/,
    );
  });

  it('a claim answered with a renamed key fails the run by name and collects nothing', async () => {
    const source = await createSource(server);
    source.fake.addMany(3, (i) => ({ startedAt: recent(300 - i) }));
    const renamed = faultyDb(
      rpcFetch(async (call, send) => {
        if (call.fn !== 'claim_collector_sources') return send();
        const rows = (await (await send()).json()) as Array<Record<string, unknown>>;
        return Response.json(
          rows.map(({ lease_token, ...rest }) => ({ ...rest, token: lease_token })),
        );
      }),
    );
    await expect(collect([source], { db: renamed })).rejects.toThrow(
      /claim_collector_sources answered in a shape this version does not read[\s\S]*lease_token/,
    );
    expect(await storedExecutionIds(source.sourceId)).toEqual([]);
  });

  it('backfills only the current billing period for a new source', async () => {
    const source = await createSource(server);
    const lastMonth = new Date(
      Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1) - 86400_000,
    );
    source.fake.addMany(30, (i) => ({
      startedAt: new Date(lastMonth.getTime() + i * 1000).toISOString(),
    }));
    source.fake.addMany(20, (i) => ({ startedAt: recent(100 - i) }));
    await collect([source]);
    await collect([source]);
    expect((await countersOf(source.tenantId)).executions).toBe(20);
    expect((await sourceState(source.sourceId)).backfill_from).toBeNull();
  });

  it('backfills the same way on an n8n older than 2.41 (no startedAfter), remembering it', async () => {
    const source = await createSource(server, { fake: { supportsStartedAfter: false } });
    source.fake.addMany(20, (i) => ({ startedAt: recent(100 - i) }));
    await collect([source]);
    expect((await countersOf(source.tenantId)).executions).toBe(20);
    expect((await sourceState(source.sourceId)).supports_started_after).toBe(false);
  });
});
