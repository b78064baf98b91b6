import { HttpResponse, http } from 'msw';
import { describe, expect, it } from 'vitest';
import {
  baseUrlOf,
  collect,
  createSource,
  sourceState,
  storedExecutionIds,
  type TestSource,
  useN8nServer,
} from '../support/collector.ts';
import { recent } from '../support/fixtures.ts';
import { superuser } from '../support/stack.ts';

/**
 * One listed execution with an implausible id (a proxy's or cache's glitch, another
 * instance's answer, a corrupted row) must not decide where every later walk stops; nor may
 * an n8n whose ids restarted have its new executions skipped as already collected.
 */

const server = useN8nServer();

/** Once: the newest page n8n lists carries one more execution, with this id, on top. */
async function listOnceWithExtraTop(source: TestSource, id: string) {
  const base = await baseUrlOf(source);
  server.use(
    http.get(
      `${base}/api/v1/executions`,
      async ({ request }) => {
        const answer = (await (await source.fake.fetch(request)).json()) as {
          data: Array<Record<string, unknown>>;
          nextCursor: string | null;
        };
        answer.data.unshift({ ...answer.data[0], id });
        return HttpResponse.json(answer);
      },
      { once: true },
    ),
  );
  return base;
}

async function storedIds(sourceId: string): Promise<string[]> {
  const { rows } = await superuser().query(
    'select execution_id::text as id from public.executions where source_id = $1 order by execution_id',
    [sourceId],
  );
  return rows.map((r: { id: string }) => r.id);
}

describe('a page that once lists an id far above any real one', () => {
  it('does not stop later executions from being collected', async () => {
    const source = await createSource(server);
    source.fake.addMany(5, (i) => ({ startedAt: recent(600 - i) }));
    // An id near the bigint range's end.
    await listOnceWithExtraTop(source, '9000000000000000000');
    const first = await collect([source]);
    expect(first.sourcesFailed).toBe(1);
    expect(first.errors[0]?.error).toMatch(
      /lists execution id 9000000000000000000, beyond 9007199254740991: no n8n assigns ids that high/,
    );
    // Two more cycles with a well-behaved n8n.
    await collect([source]);
    await collect([source]);
    expect((await sourceState(source.sourceId)).floor_id).toBe('5');

    // Real executions keep arriving: ids 6–10.
    source.fake.addMany(5, (i) => ({ startedAt: recent(120 - i) }));
    const summary = await collect([source]);
    expect(summary.sourcesOk + summary.sourcesFailed).toBe(1);
    const stored = (await storedIds(source.sourceId)).map(Number);
    // Either the poisoned page was refused (the source fails, a person looks), or the new
    // executions are collected. Silently skipping them both under-bills and reads healthy.
    if (summary.sourcesFailed === 0) {
      expect(stored.filter((id) => id >= 6 && id <= 10)).toEqual([6, 7, 8, 9, 10]);
    }
    expect(stored).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('believes a far newest id only when n8n answers it by id', async () => {
    const source = await createSource(server);
    source.fake.addMany(5, (i) => ({ startedAt: recent(600 - i) }));
    // 999,995 above the next id listed: more than a page of the longest probed runs of ids.
    await listOnceWithExtraTop(source, '1000000');
    const refused = await collect([source]);
    expect(refused.errors[0]?.error).toMatch(
      /lists execution 1000000, 999995 ids above id 5, the next it is known to have .* but does not answer it when asked by id/,
    );
    expect(await storedExecutionIds(source.sourceId)).toEqual([]);
    expect(source.fake.requests.map((r) => r.path)).toContain('/api/v1/executions/1000000');

    // The same list, where n8n does answer the far id by id (another project's executions
    // in between, say): it is collected as any other.
    const base = await listOnceWithExtraTop(source, '1000000');
    const [newest] = source.fake.all().slice(-1);
    server.use(
      http.get(`${base}/api/v1/executions/1000000`, () =>
        HttpResponse.json({ ...newest, id: '1000000' }),
      ),
    );
    const believed = await collect([source]);
    expect(believed.sourcesOk).toBe(1);
    expect(await storedIds(source.sourceId)).toEqual(['1', '2', '3', '4', '5', '1000000']);
  });
});

describe('an n8n whose execution ids restarted at the same address', () => {
  it('fails the source, saying so, instead of skipping its new executions as collected', async () => {
    const source = await createSource(server);
    source.fake.addMany(20, (i) => ({ startedAt: recent(900 - i) }));
    await collect([source]);
    await collect([source]);
    expect((await sourceState(source.sourceId)).high_water_id).toBe('20');

    source.fake.reinstall();
    source.fake.addMany(3, (i) => ({ startedAt: recent(60 - i) }));
    const summary = await collect([source]);
    expect(summary.sourcesFailed).toBe(1);
    expect(summary.errors[0]?.error).toMatch(
      /newest execution is id 3, more than 10 below id 20, the highest an earlier walk listed: its ids restarted .* Add the instance as a new source/,
    );
    const state = await sourceState(source.sourceId);
    expect(state.consecutive_failures).toBe(1);
    expect(state.high_water_id).toBe('20');
  });
});
