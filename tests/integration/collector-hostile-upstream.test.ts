import { HttpResponse, http } from 'msw';
import { describe, expect, it } from 'vitest';
import { sealApiKey } from '../../src/n8n/api-key.ts';
import {
  baseUrlOf,
  collect,
  countersOf,
  createSource,
  keyring,
  storedExecutionIds,
  type TestSource,
  useN8nServer,
} from '../support/collector.ts';
import { addMember, createTenant, createUser, recent } from '../support/fixtures.ts';
import { claimSource } from '../support/leases.ts';
import { asRole, serviceClient, superuser } from '../support/stack.ts';

/**
 * Every n8n answer is hostile. Whatever the class — a cursor that does not move, a page
 * larger than asked, a body of tens of MB, a time far from now, a redirect elsewhere — the
 * source's walk stops, nothing of the bad page is stored, the source is marked failing with
 * a reason a person can act on, and the other sources of the run are collected as usual.
 */

const server = useN8nServer();
const PAGE = 5;

async function stateOf(sourceId: string) {
  const { rows } = await superuser().query(
    'select consecutive_failures, last_error, walk_cursor from public.collector_source_state where source_id = $1',
    [sourceId],
  );
  return rows[0] as {
    consecutive_failures: number;
    last_error: string | null;
    walk_cursor: string | null;
  };
}

/**
 * Answers the list endpoint of a source's n8n with `tamper(real answer, request number)`;
 * getExecution and everything else stay honest.
 */
async function tamperList(
  source: TestSource,
  tamper: (
    body: { data: Array<Record<string, unknown>>; nextCursor: string | null },
    n: number,
  ) => Response | object,
) {
  const baseUrl = await baseUrlOf(source);
  let n = 0;
  server.use(
    http.get(`${baseUrl}/api/v1/executions`, async ({ request }) => {
      const real = (await (await source.fake.fetch(request)).json()) as Parameters<
        typeof tamper
      >[0];
      const answer = tamper(real, ++n);
      return answer instanceof Response ? answer : HttpResponse.json(answer);
    }),
  );
}

/** A hostile source and a healthy one of another tenant, collected in one run. */
async function runWithHealthyNeighbour(setUp: (hostile: TestSource) => Promise<void>): Promise<{
  hostile: TestSource;
  healthy: TestSource;
  result: Awaited<ReturnType<typeof collect>>;
}> {
  const hostile = await createSource(server);
  const healthy = await createSource(server);
  hostile.fake.addMany(20, (i) => ({ startedAt: recent(300 - i) }));
  healthy.fake.addMany(12, (i) => ({ startedAt: recent(300 - i) }));
  await setUp(hostile);
  const result = await collect([hostile, healthy], { settings: { pageSize: PAGE } });
  expect(await storedExecutionIds(healthy.sourceId)).toHaveLength(12);
  expect((await stateOf(healthy.sourceId)).consecutive_failures).toBe(0);
  expect(result.sourcesOk).toBe(1);
  expect(result.sourcesFailed).toBe(1);
  return { hostile, healthy, result };
}

async function expectRefused(hostile: TestSource, reason: RegExp, storedBefore: number) {
  const state = await stateOf(hostile.sourceId);
  expect(state.consecutive_failures).toBe(1);
  expect(state.last_error).toMatch(reason);
  expect(await storedExecutionIds(hostile.sourceId)).toHaveLength(storedBefore);
  expect((await countersOf(hostile.tenantId)).executions).toBe(storedBefore);
}

describe('a cursor that does not make progress', () => {
  it('the same page and cursor again: the walk stops after the first page', async () => {
    let first: object | undefined;
    const { hostile } = await runWithHealthyNeighbour((source) =>
      tamperList(source, (body, n) => {
        if (n === 1) first = body;
        return first ?? body;
      }),
    );
    await expectRefused(hostile, /not below it|cursor it was asked with/, PAGE);
  });

  it('ids that go up: a second page above the first is not billed', async () => {
    const { hostile } = await runWithHealthyNeighbour((source) =>
      tamperList(source, (body, n) =>
        n === 1
          ? body
          : {
              ...body,
              data: body.data.map((e, i) => ({ ...e, id: String(1000 - i) })),
            },
      ),
    );
    await expectRefused(hostile, /starts at id 1000, not below it/, PAGE);
    expect(Math.max(...(await storedExecutionIds(hostile.sourceId)))).toBe(20);
  });
});

describe('a page larger than asked, and very large bodies', () => {
  it('more items than the limit: nothing of the page is stored', async () => {
    const { hostile } = await runWithHealthyNeighbour((source) =>
      tamperList(source, (body) => ({
        ...body,
        data: [...body.data, ...body.data.map((e) => ({ ...e, id: String(Number(e.id) + 5000) }))],
      })),
    );
    await expectRefused(hostile, /sent 10 executions for a page of at most 5/, 0);
  });

  it('a body declared at 50 MB is refused unread', async () => {
    const { hostile } = await runWithHealthyNeighbour((source) =>
      tamperList(
        source,
        () =>
          new Response(new ReadableStream({ pull: (c) => c.enqueue(new Uint8Array(65536)) }), {
            headers: { 'content-length': String(50 * 1024 * 1024) },
          }),
      ),
    );
    await expectRefused(hostile, /larger than 4194304 bytes/, 0);
  });
});

describe('timestamps outside any plausible window', () => {
  it('an execution started in 2099 is not billed, and no partition is made for it', async () => {
    const { hostile } = await runWithHealthyNeighbour((source) =>
      tamperList(source, (body, n) =>
        n === 2
          ? {
              ...body,
              data: body.data.map((e, i) =>
                i === 2 ? { ...e, startedAt: '2099-06-01T00:00:00.000Z' } : e,
              ),
            }
          : body,
      ),
    );
    await expectRefused(
      hostile,
      /startedAt 2099-06-01T00:00:00.000Z, more than 5 minutes ahead/,
      PAGE,
    );
    const { rows } = await superuser().query(
      "select count(*)::int as n from pg_class where relname like 'executions_2099%'",
    );
    expect(rows[0].n).toBe(0);
  });

  it('the database refuses such a page too, and makes partitions only for months near now', async () => {
    const source = await createSource(server);
    const lease = await claimSource(source.sourceId);
    for (const at of ['2099-01-01T00:00:00Z', '1970-01-02T00:00:00Z']) {
      const { error } = await serviceClient().rpc('ingest_execution_page', {
        source_id: source.sourceId,
        lease_token: lease.lease_token,
        executions: [
          {
            id: 1,
            status: 'success',
            mode: 'trigger',
            workflow_id: 'w',
            started_at: at,
            stopped_at: at,
            retry_of: null,
          },
        ],
      });
      expect(error?.message).toMatch(/more than 5 minutes ahead of now or more than 400 days ago/);
    }
    for (const at of ['2099-01-01', '1970-01-01', '0001-01-01']) {
      await expect(
        superuser().query('select private.ensure_execution_partition($1::timestamptz)', [at]),
      ).rejects.toThrow(/only months from 14 before now to the next one/);
    }
    expect(await storedExecutionIds(source.sourceId)).toEqual([]);
  });
});

describe('redirects', () => {
  it('a redirect to another origin fails the source; the key is never sent there', async () => {
    const elsewhere: Array<string | null> = [];
    server.use(
      http.get('https://elsewhere.example/*', ({ request }) => {
        elsewhere.push(request.headers.get('x-n8n-api-key'));
        return HttpResponse.json({ data: [], nextCursor: null });
      }),
    );
    const { hostile } = await runWithHealthyNeighbour((source) =>
      tamperList(
        source,
        () =>
          new Response(null, {
            status: 307,
            headers: { location: 'https://elsewhere.example/api/v1/executions' },
          }),
      ),
    );
    await expectRefused(hostile, /redirected to another origin \(https:\/\/elsewhere.example\)/, 0);
    expect(elsewhere).toEqual([]);
  });
});

describe('credentials in a source URL', () => {
  it('the database refuses a source URL with a user or password', async () => {
    const tenant = await createTenant();
    for (const url of [
      'https://admin:hunter2@acme.n8n.example',
      'https://token@acme.n8n.example',
    ]) {
      const { error } = await serviceClient().rpc('add_n8n_source', {
        tenant_id: tenant.id,
        name: 'main',
        base_url: url,
        api_key_ciphertext: sealApiKey(keyring, tenant.id, 'n8n_api_x'),
      });
      expect(error?.message).toMatch(/n8n_sources_base_url_no_credentials/);
    }
  });

  it("tenant members read their sources' ids only: no URL, name, project or gaps", async () => {
    const source = await createSource(server);
    const user = await createUser();
    await addMember(source.tenantId, user);
    await asRole('authenticated', { sub: user }, async (db) => {
      const { rows } = await db.query('select id, tenant_id from public.n8n_sources');
      expect(rows).toEqual([{ id: source.sourceId, tenant_id: source.tenantId }]);
      // Each refusal aborts the statement only: a savepoint keeps the transaction usable.
      const refusal = async (sql: string) => {
        await db.query('savepoint probe');
        try {
          await db.query(sql);
          return null;
        } catch (error) {
          await db.query('rollback to savepoint probe');
          return (error as { code?: string }).code;
        }
      };
      for (const column of ['base_url', 'name', 'project_id']) {
        expect(await refusal(`select ${column} from public.n8n_sources`), column).toBe('42501');
      }
      expect(await refusal('select * from public.collection_gaps')).toBe('42501');
    });
  });
});
