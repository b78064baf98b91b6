import { HttpResponse, http } from 'msw';
import { describe, expect, it } from 'vitest';
import type { Lease } from '../../src/collector/run-collection.ts';
import { ok } from '../../src/domain/result.ts';
import { createN8nClient } from '../../src/n8n/client.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { recordedRun } from '../../src/ops/scheduled-run.ts';
import {
  baseUrlOf,
  collect,
  createSource,
  listRequest,
  storedExecutionIds,
  type TestSource,
  useN8nServer,
} from '../support/collector.ts';
import { faultyDb, hangUntilAborted, rpcFetch } from '../support/faults.ts';
import { recent } from '../support/fixtures.ts';
import { succeeded } from '../support/result.ts';
import { serviceClient, superuser } from '../support/stack.ts';

/**
 * Slow or trickling upstreams: every request and retry wait is cut when the run's budget is
 * spent, so the run always hands off and records its end, however slow n8n is. The budget is
 * an AbortSignal the test aborts when n8n has started to stall (no timing is asserted); the
 * client's own timeout is a minute, so without the cut the run would outlast the test.
 */

const server = useN8nServer();

/** A client that would wait a minute per attempt and honour a Retry-After of an hour. */
const patientClient = ({ baseUrl, apiKey }: { baseUrl: string; apiKey: string }) =>
  createN8nClient({
    baseUrl,
    apiKey,
    timeoutMs: 60_000,
    retries: 5,
    minRetryDelayMs: 1,
    maxRetryDelayMs: 3_600_000,
  });

async function runRow(runId: string) {
  const { rows } = await superuser().query(
    'select finished_at, pages, sources_deferred from public.collector_runs where id = $1',
    [runId],
  );
  return rows[0] as { finished_at: Date | null; pages: number; sources_deferred: number };
}

describe.each([
  ['hangs', (source: TestSource) => source.fake.failNext({ kind: 'hang' }, 10)],
  [
    'asks to retry in an hour',
    (source: TestSource) =>
      source.fake.failNext({ kind: 'status', status: 503, headers: { 'retry-after': '3600' } }, 10),
  ],
  [
    'trickles its answer a byte at a time',
    async (source: TestSource) => {
      server.use(
        http.get(`${await baseUrlOf(source)}/api/v1/executions`, ({ request }) => {
          source.fake.requests.push({ path: new URL(request.url).pathname, query: {} });
          const body = new ReadableStream<Uint8Array>({
            async pull(controller) {
              await new Promise((r) => setTimeout(r, 200));
              controller.enqueue(new TextEncoder().encode(' '));
            },
          });
          return new HttpResponse(body, { headers: { 'content-type': 'application/json' } });
        }),
      );
    },
  ],
] as const)('an n8n that %s', (_, stall) => {
  it('is cut at the budget: the run hands the source off, records its end, and the other source is collected', async () => {
    const slow = await createSource(server);
    const healthy = await createSource(server);
    slow.fake.addMany(10, (i) => ({ startedAt: recent(300 - i) }));
    healthy.fake.addMany(10, (i) => ({ startedAt: recent(300 - i) }));
    await stall(slow);

    // The budget is spent once the healthy source is done and the slow one has stalled.
    const budget = new AbortController();
    let healthyDone: () => void = () => {};
    const healthyFinished = new Promise<void>((resolve) => {
      healthyDone = resolve;
    });
    void Promise.all([listRequest(slow, 1), healthyFinished]).then(() =>
      setTimeout(() => budget.abort(), 50),
    );
    const handedOff: Lease[][] = [];
    const summary = await recordedRun(
      { db: serviceClient(), functionName: 'collect-usage-slow-test', log: silentLogger },
      async () =>
        ok(
          await collect([slow, healthy], {
            createN8nClient: patientClient,
            budgetSignal: budget.signal,
            onSourceEvent: (event) => {
              if (event.type === 'done' && event.source.source_id === healthy.sourceId)
                healthyDone();
            },
            handOff: async (_runId, leases) => {
              handedOff.push(leases);
              return ok(null);
            },
          }),
        ),
    ).then(succeeded);

    expect(summary.sourcesDeferred).toBe(1);
    expect(summary.sourcesFailed).toBe(0);
    expect(handedOff).toEqual([[expect.objectContaining({ source_id: slow.sourceId })]]);
    expect((await runRow(summary.runId)).finished_at).not.toBeNull();
    expect(await storedExecutionIds(slow.sourceId)).toEqual([]);
    expect(await storedExecutionIds(healthy.sourceId)).toHaveLength(10);
    const { rows } = await superuser().query(
      "select finished_at, ok from public.scheduled_runs where function_name = 'collect-usage-slow-test' order by started_at desc limit 1",
    );
    expect(rows[0]).toMatchObject({ ok: true, finished_at: expect.any(Date) });
  });
});

describe('a walk cut mid-way', () => {
  it('keeps the pages committed before the cut, and the next run resumes from there', async () => {
    const source = await createSource(server);
    source.fake.addMany(30, (i) => ({ startedAt: recent(300 - i) }));
    const budget = new AbortController();
    // n8n stalls on the third page; the budget is spent while it does.
    server.use(
      http.get(`${await baseUrlOf(source)}/api/v1/executions`, async ({ request }) => {
        if (new URL(request.url).searchParams.has('cursor') && budget.signal.aborted === false) {
          const pages = source.fake.requests.filter((r) => r.path.endsWith('/executions')).length;
          if (pages >= 2) {
            setTimeout(() => budget.abort(), 50);
            await new Promise((resolve) => request.signal.addEventListener('abort', resolve));
            return HttpResponse.error();
          }
        }
        return source.fake.fetch(request);
      }),
    );
    const first = await collect([source], {
      createN8nClient: patientClient,
      budgetSignal: budget.signal,
      settings: { pageSize: 10 },
    });
    expect(first).toMatchObject({ sourcesDeferred: 1, pages: 2, executionsIngested: 20 });
    expect(await runRow(first.runId)).toMatchObject({ pages: 2, sources_deferred: 1 });

    const second = await collect([source], { settings: { pageSize: 10 } });
    expect(second.sourcesOk).toBe(1);
    expect(await storedExecutionIds(source.sourceId)).toHaveLength(30);
  });
});

describe('a database call still in flight when the run must end', () => {
  it('is cut: the walk counts as deferred, not as a failure or an outage, and the run records its end', async () => {
    const source = await createSource(server);
    source.fake.addMany(10, (i) => ({ startedAt: recent(300 - i) }));
    const budget = new AbortController();
    const cut = new AbortController();
    const db = faultyDb(
      rpcFetch((call, send) => {
        if (call.fn !== 'ingest_execution_page') return send();
        // The budget passes, then the cut, while the ingest waits on a database that hangs.
        budget.abort();
        queueMicrotask(() => cut.abort());
        return hangUntilAborted(call);
      }),
    );
    const summary = await collect([source], {
      db,
      budgetSignal: budget.signal,
      cutSignal: cut.signal,
    });
    expect(summary).toMatchObject({
      sourcesDeferred: 1,
      sourcesFailed: 0,
      databaseUnreachable: false,
      errors: [],
    });
    expect((await runRow(summary.runId)).finished_at).not.toBeNull();
    expect(await storedExecutionIds(source.sourceId)).toEqual([]);
  });
});
