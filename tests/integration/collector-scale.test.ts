import { setTimeout as sleep } from 'node:timers/promises';
import { http } from 'msw';
import { describe, expect, it } from 'vitest';
import type { Lease } from '../../src/collector/leases.ts';
import type { RunSummary } from '../../src/collector/run-collection.ts';
import { PAGES_PER_INGEST } from '../../src/collector/sync-source.ts';
import type { Db } from '../../src/db/client.ts';
import { ok } from '../../src/domain/result.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import {
  collect,
  countersOf,
  createSource,
  expectedBillable,
  fastN8nClient,
  storedExecutionIds,
  type TestSource,
  useN8nServer,
} from '../support/collector.ts';
import {
  dropRequest,
  faultyDb,
  gate,
  loseResponse,
  type RpcHook,
  rpcFetch,
} from '../support/faults.ts';
import { createPlan, recent } from '../support/fixtures.ts';
import { claimSources, leasesOf } from '../support/leases.ts';
import { superuser } from '../support/stack.ts';

/**
 * The collector at scale: leases that outlive a slow background run, the scheduled run's
 * fan-out to background workers, statistics for a new month's partition.
 */

const server = useN8nServer();

async function sourcesWithExecutions(n: number, executions: number): Promise<TestSource[]> {
  const { id: planId } = await createPlan({ included_executions: 1_000_000 });
  const sources = await Promise.all(
    Array.from({ length: n }, () => createSource(server, { planId })),
  );
  for (const s of sources) s.fake.addMany(executions, (i) => ({ startedAt: recent(600 - i * 5) }));
  return sources;
}

async function leaseStates(sourceIds: string[]) {
  const { rows } = await superuser().query(
    `select source_id, lease_token, lease_expires_at, now() as db_now
     from public.collector_source_state where source_id = any ($1::uuid[])`,
    [sourceIds],
  );
  return rows as Array<{
    source_id: string;
    lease_token: string | null;
    lease_expires_at: Date | null;
    db_now: Date;
  }>;
}

/**
 * A background run of one worker over three sources handed over with ten-second leases:
 * whichever source the run takes first stalls at its n8n until every lease as handed over
 * has run out, so that one source is being worked while the other two wait in the pool.
 * Every source's first list request stalls, so the run's order does not matter. Resolves
 * with the run's summary once it held every lease past its first expiry.
 */
async function backgroundRunOutlivingItsLeases(sources: TestSource[], db?: Db) {
  const ids = sources.map((s) => s.sourceId);
  const leases: Lease[] = leasesOf(await claimSources(ids, { leaseSeconds: 10 }));
  const firstExpiry = Math.max(
    ...(await leaseStates(ids)).map((s) => (s.lease_expires_at as Date).getTime()),
  );

  const { rows } = await superuser().query<{ base_url: string }>(
    'select base_url from public.n8n_sources where id = any ($1::uuid[])',
    [ids],
  );
  const stalled = gate();
  for (const { base_url } of rows) {
    server.use(
      http.get(
        `${base_url}/api/v1/executions`,
        async () => {
          await stalled.opened;
        },
        { once: true },
      ),
    );
  }
  const run = collect(sources, {
    trigger: 'background',
    select: { leases },
    createN8nClient: fastN8nClient({ timeoutMs: 120_000 }),
    settings: { leaseSeconds: 10, concurrency: 1 },
    ...(db ? { db } : {}),
  });
  for (;;) {
    const states = await leaseStates(ids);
    const now = (states[0] as { db_now: Date }).db_now.getTime();
    const renewed = states.every((s) => (s.lease_expires_at?.getTime() ?? 0) > now);
    if (now > firstExpiry + 1000 && renewed) break;
    // Past a whole lease more without every lease alive, one was lost: say which.
    if (now > firstExpiry + 11_000) expect(states, 'every lease renewed').toBe('renewed');
    await sleep(250);
  }
  stalled.open();
  return run;
}

/** Each source collected once, and its lease released. */
async function expectCollectedOnce(sources: TestSource[], summary: RunSummary) {
  expect(summary).toMatchObject({ sourcesOk: 3, sourcesFailed: 0, errors: [] });
  for (const s of sources) {
    expect((await countersOf(s.tenantId)).billable).toBe(expectedBillable(s.fake));
  }
  expect((await leaseStates(sources.map((s) => s.sourceId))).map((s) => s.lease_token)).toEqual([
    null,
    null,
    null,
  ]);
}

describe('leases', () => {
  // It waits on the database's clock for a ten-second lease to run out; on a loaded machine
  // that and the set-up around it can pass the default 30 s.
  it('a background run keeps every lease it was handed for its whole run, longer than a lease lasts', {
    timeout: 120_000,
  }, async () => {
    const sources = await sourcesWithExecutions(3, 4);
    await expectCollectedOnce(sources, await backgroundRunOutlivingItsLeases(sources));
  });

  it('keeps its leases through renewals that fail or hang, one after another, for most of a lease', {
    timeout: 120_000,
  }, async () => {
    const sources = await sourcesWithExecutions(3, 4);
    // The first renewals, one after another: one dropped, one that hangs for 4 s, one
    // answered 503, one the database runs but whose answer is lost; about half of the
    // lease's 10 s. Renewing every third of the lease without retrying, the run loses them.
    const faults: RpcHook[] = [
      dropRequest,
      async (_call, send) => {
        await sleep(4000);
        return send();
      },
      async () =>
        new Response(JSON.stringify({ message: 'upstream unavailable' }), { status: 503 }),
      loseResponse,
    ];
    const renewals: number[] = [];
    const flaky = rpcFetch(async (call, send) => {
      if (call.fn !== 'renew_collector_leases') return send();
      renewals.push(Date.now());
      return (faults[call.indexOfFn - 1] ?? ((_, forward) => forward()))(call, send);
    });
    const summary = await backgroundRunOutlivingItsLeases(sources, faultyDb(flaky));
    expect(renewals.length).toBeGreaterThan(faults.length);
    expect(summary.sourcesLeaseLost).toBe(0);
    await expectCollectedOnce(sources, summary);
  });
});

describe('fan-out', () => {
  it('a scheduled run keeps what it can finish and hands the rest to K background invocations; each source is collected once', async () => {
    const sources = await sourcesWithExecutions(22, 3);
    const claims = new Map<string, number>();
    const countClaims = (ids: string[]) => {
      for (const id of ids) claims.set(id, (claims.get(id) ?? 0) + 1);
    };
    const background: Array<Promise<RunSummary>> = [];
    const slices: number[] = [];
    const started = Date.now();
    // One worker and a two-second budget: the scheduled run keeps two sources; the other
    // twenty go out in slices of five. The clock stands still and the budget's signal never
    // fires, so nothing runs out of budget however slow the machine is.
    const settings = { concurrency: 1, budgetMs: 2000, sliceSources: 5 };
    const budgetSignal = new AbortController().signal;

    const scheduled = await collect(sources, {
      trigger: 'schedule',
      settings,
      now: () => started,
      budgetSignal,
      onSourceEvent: (event) => {
        if (event.type === 'claimed') countClaims(event.sources.map((s) => s.source_id));
      },
      handOff: async (_runId, leases) => {
        slices.push(leases.length);
        // As Netlify does: accepted at once, run on its own.
        background.push(
          collect(sources, {
            trigger: 'background',
            select: { leases },
            settings,
            now: () => started,
            budgetSignal,
            log: silentLogger,
            onSourceEvent: (event) => {
              if (event.type === 'claimed') countClaims(event.sources.map((s) => s.source_id));
            },
          }),
        );
        return ok(null);
      },
    });
    const workers = await Promise.all(background);

    expect(slices).toEqual([5, 5, 5, 5]);
    expect(scheduled).toMatchObject({ sourcesOk: 2, sourcesDeferred: 0, errors: [] });
    for (const w of workers) expect(w).toMatchObject({ sourcesOk: 5, errors: [] });
    expect([...claims.keys()].sort()).toEqual(sources.map((s) => s.sourceId).sort());
    expect([...claims.values()].every((n) => n === 1)).toBe(true);
    for (const s of sources) {
      // One list request: the source was walked once in the cycle.
      expect(s.fake.requests.filter((r) => r.path.endsWith('/executions'))).toHaveLength(1);
      expect((await countersOf(s.tenantId)).billable).toBe(expectedBillable(s.fake));
    }
  });
});

describe('several pages per ingest call', () => {
  it('sends eight pages per call and counts each execution once, also when the walk repeats', async () => {
    const [source] = await sourcesWithExecutions(1, 100);
    const { sourceId, tenantId, fake } = source as TestSource;
    let ingests = 0;
    const counting = rpcFetch(async (call, send) => {
      if (call.fn === 'ingest_execution_page') ingests += 1;
      return send();
    });
    const first = await collect([source as TestSource], {
      db: faultyDb(counting),
      settings: { pageSize: 10 },
    });
    // 100 executions in pages of 10: calls of 8 and 2 pages.
    expect(PAGES_PER_INGEST).toBe(8);
    expect(first).toMatchObject({ sourcesOk: 1, pages: 10, executionsIngested: 100, errors: [] });
    expect(ingests).toBe(2);
    const again = await collect([source as TestSource], { settings: { pageSize: 10 } });
    expect(again.executionsIngested).toBe(0);
    expect(await storedExecutionIds(sourceId)).toEqual(
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
    expect((await countersOf(tenantId)).billable).toBe(expectedBillable(fake));
  });
});
