import { http } from 'msw';
import { describe, expect, it } from 'vitest';
import {
  collect,
  countersOf,
  createSource,
  type TestSource,
  useN8nServer,
} from '../support/collector.ts';
import { recent } from '../support/fixtures.ts';
import { serviceClient, superuser } from '../support/stack.ts';

/**
 * Deleted or pruned executions: every id the collector never saw final is recorded once, as
 * a gap that says what is known (pruned tail; missing inside the listed range — deleted,
 * pruned or never saved), gap rows never overlap however the floor moves, and an id that
 * answered 404 is never fetched again. Probes run concurrently (bounded), a bounded number
 * per run, after the open executions are revisited.
 */

const server = useN8nServer();

async function gapsOf(sourceId: string) {
  const { rows } = await superuser().query(
    'select kind, from_id::int, to_id::int from public.collection_gaps where source_id = $1 order by from_id',
    [sourceId],
  );
  return rows as Array<{ kind: string; from_id: number; to_id: number }>;
}

async function probesLeft(sourceId: string): Promise<number> {
  const { rows } = await superuser().query(
    'select count(*)::int as n from public.execution_probes where source_id = $1',
    [sourceId],
  );
  return rows[0].n;
}

const fetchedById = (source: TestSource) =>
  source.fake.requests
    .map((r) => /\/executions\/(\d+)$/.exec(r.path)?.[1])
    .filter((id): id is string => id !== undefined)
    .map(Number);

function expectNoOverlap(gaps: Array<{ from_id: number; to_id: number }>) {
  for (let i = 1; i < gaps.length; i++) {
    expect(gaps[i]?.from_id, JSON.stringify(gaps)).toBeGreaterThan(gaps[i - 1]?.to_id as number);
  }
}

/** n8n assigns ids at queue time; executions of workflows that do not save leave holes. */
function historyWithUnsaved(source: TestSource, total: number, unsaved: (id: number) => boolean) {
  source.fake.addMany(total, (i) => ({ startedAt: recent(3000 - i) }));
  for (let id = 1; id <= total; id++) if (unsaved(id)) source.fake.remove(String(id));
}

describe('ids missing inside the listed range', () => {
  it('are recorded once as missing gaps, counted for the operator, and never fetched again', async () => {
    const source = await createSource(server);
    historyWithUnsaved(source, 40, (id) => id === 7 || (id >= 20 && id <= 22));
    await collect([source]);
    expect(await gapsOf(source.sourceId)).toEqual([
      { kind: 'missing', from_id: 7, to_id: 7 },
      { kind: 'missing', from_id: 20, to_id: 22 },
    ]);
    expect(await probesLeft(source.sourceId)).toBe(0);
    const probed = fetchedById(source);
    expect(probed.sort((a, b) => a - b)).toEqual([7, 20, 21, 22]);

    // Later walks re-read the range (the floor lags one walk behind): nothing is asked again.
    source.fake.addMany(5, (i) => ({ startedAt: recent(100 - i) }));
    await collect([source]);
    await collect([source]);
    expect(fetchedById(source).sort((a, b) => a - b)).toEqual([7, 20, 21, 22]);
    expect(await gapsOf(source.sourceId)).toHaveLength(2);
    expect((await countersOf(source.tenantId)).executions).toBe(41);

    const { data: health } = await serviceClient().rpc('collector_health', {
      tenant_ids: [source.tenantId],
    });
    expect(health).toMatchObject({
      unacknowledged_gaps: { gaps: 2, executions: 4, by_kind: { missing: 4 }, sources: 1 },
    });
    const { data: listed } = await serviceClient().rpc('list_n8n_sources', {
      source_ids: [source.sourceId],
    });
    expect(listed?.[0]?.gaps).toBe(2);
  });
});

describe('a pruned tail while the floor moves', () => {
  it('never records overlapping or repeated gap rows', async () => {
    const source = await createSource(server);
    source.fake.addMany(50, (i) => ({ startedAt: recent(6000 - i) }));
    await collect([source], { settings: { pageSize: 20 } });
    await collect([source], { settings: { pageSize: 20 } });
    for (const [added, keep] of [
      [200, 60],
      [150, 40],
      [300, 100],
    ] as const) {
      source.fake.addMany(added, (i) => ({ startedAt: recent(5000 - i) }));
      source.fake.prune({ keepNewest: keep });
      for (let run = 0; run < 3; run++) await collect([source], { settings: { pageSize: 20 } });
      const gaps = await gapsOf(source.sourceId);
      expectNoOverlap(gaps);
    }
    const gaps = await gapsOf(source.sourceId);
    expect(gaps.every((g) => g.kind === 'pruned')).toBe(true);
    // Every id n8n pruned before it was collected is in exactly one gap row.
    const covered = gaps.reduce((n, g) => n + g.to_id - g.from_id + 1, 0);
    const collected = (await countersOf(source.tenantId)).executions;
    expect(covered + collected).toBe(700);
  });
});

describe('probes at scale', () => {
  it('a source with 500 unsaved ids drains within one run, concurrently and bounded', async () => {
    const source = await createSource(server);
    // Ids 2, 4, … 1000 never saved; 1001 is the newest.
    historyWithUnsaved(source, 1001, (id) => id % 2 === 0);
    let inFlight = 0;
    let most = 0;
    server.use(
      http.get(`${await baseUrl(source)}/api/v1/executions/:id`, async ({ request }) => {
        inFlight += 1;
        most = Math.max(most, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 5));
        inFlight -= 1;
        return source.fake.fetch(request);
      }),
    );
    await collect([source], { settings: { probeConcurrency: 8 } });
    expect(await probesLeft(source.sourceId)).toBe(0);
    expect(fetchedById(source)).toHaveLength(500);
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(8);
    const { data: health } = await serviceClient().rpc('collector_health', {
      tenant_ids: [source.tenantId],
    });
    expect(health).toMatchObject({ unacknowledged_gaps: { executions: 500 } });
  });

  it('fetches at most probeBatch ids per run; the rest wait for the next run', async () => {
    const source = await createSource(server);
    historyWithUnsaved(source, 301, (id) => id % 2 === 0);
    await collect([source], { settings: { probeBatch: 100 } });
    expect(fetchedById(source)).toHaveLength(100);
    expect(await probesLeft(source.sourceId)).toBe(50);
    await collect([source], { settings: { probeBatch: 100 } });
    expect(await probesLeft(source.sourceId)).toBe(0);
    expect(new Set(fetchedById(source)).size).toBe(fetchedById(source).length);
  });

  it('revisits waiting executions before any probe, so a probe backlog never delays them', async () => {
    const source = await createSource(server);
    const waiting = source.fake.add({ status: 'waiting', startedAt: recent(4000) });
    // Ids 2–201, the odd ones from 3 to 199 never saved.
    historyWithUnsaved(source, 200, (id) => id % 2 === 1 && id > 2);
    // Two walks: the floor is now above the waiting execution, so only a revisit finds it.
    await collect([source], { settings: { probeBatch: 1 } });
    await collect([source], { settings: { probeBatch: 1 } });
    expect(await probesLeft(source.sourceId)).toBeGreaterThan(90);
    source.fake.update(waiting.id, { status: 'success' });
    source.fake.requests.length = 0;
    await collect([source], { settings: { probeBatch: 1 } });
    const byId = fetchedById(source);
    expect(byId).toHaveLength(2);
    expect(byId[0]).toBe(Number(waiting.id));
    expect((await countersOf(source.tenantId)).executions).toBe(102);
  });
});

async function baseUrl(source: TestSource): Promise<string> {
  const { rows } = await superuser().query(
    'select base_url from public.n8n_sources where id = $1',
    [source.sourceId],
  );
  return rows[0].base_url;
}
