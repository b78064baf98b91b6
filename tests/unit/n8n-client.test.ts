import { describe, expect, it } from 'vitest';
import { createN8nClient, type N8nClientOptions, type RetryEvent } from '../../src/n8n/client.ts';
import { FakeN8n, type FakeN8nOptions } from '../support/fake-n8n.ts';
import { useMockServer } from '../support/msw.ts';
import { failureOf } from '../support/n8n-failure.ts';

const BASE_URL = 'https://acme.n8n.example';
const API_KEY = 'n8n_api_test_key';

const server = useMockServer();

function fakeN8n(options: Partial<FakeN8nOptions> = {}): FakeN8n {
  const fake = new FakeN8n({ baseUrl: BASE_URL, apiKey: API_KEY, ...options });
  server.use(...fake.handlers());
  return fake;
}

/** Tiny delays so retries cost milliseconds; tests never assert on elapsed time. */
function client(options: Partial<N8nClientOptions> = {}) {
  return createN8nClient({
    baseUrl: BASE_URL,
    apiKey: API_KEY,
    minRetryDelayMs: 1,
    maxRetryDelayMs: 5,
    timeoutMs: 2_000,
    ...options,
  });
}

const decode = (cursor: string) => JSON.parse(Buffer.from(cursor, 'base64').toString());

describe('listExecutions: paging', () => {
  it('pages through 600 executions newest first, each exactly once, and stops on a null cursor', async () => {
    const fake = fakeN8n();
    fake.addMany(600);
    const n8n = client();

    const ids: string[] = [];
    const pageSizes: number[] = [];
    let cursor: string | undefined;
    do {
      const page = await n8n.listExecutions({ limit: 250, cursor });
      ids.push(...page.data.map((e) => e.id));
      pageSizes.push(page.data.length);
      cursor = page.nextCursor ?? undefined;
    } while (cursor);

    expect(pageSizes).toEqual([250, 250, 100]);
    expect(ids).toEqual(Array.from({ length: 600 }, (_, i) => String(600 - i)));
    expect(fake.requests).toHaveLength(3);
  });

  it('sends n8n the cursor it handed out: base64 of {"lastId","limit"}', async () => {
    const fake = fakeN8n();
    fake.addMany(5);
    const n8n = client();

    const first = await n8n.listExecutions({ limit: 2 });
    expect(first.nextCursor).not.toBeNull();
    expect(decode(first.nextCursor as string)).toEqual({ lastId: '4', limit: 2 });

    const second = await n8n.listExecutions({ limit: 2, cursor: first.nextCursor as string });
    expect(second.data.map((e) => e.id)).toEqual(['3', '2']);
    expect(fake.requests[1]).toEqual({
      path: '/api/v1/executions',
      query: { limit: '2', cursor: first.nextCursor },
    });
  });

  it('gets a null cursor when the last page is exactly full, as n8n counts what is left', async () => {
    const fake = fakeN8n();
    fake.addMany(250);
    const page = await client().listExecutions();
    expect(page.data).toHaveLength(250);
    expect(page.nextCursor).toBeNull();
  });

  it('sends the API key and asks for JSON, never for execution data', async () => {
    const fake = fakeN8n();
    fake.add();
    const seen: Request[] = [];
    const n8n = client({
      fetch: (input, init) => {
        seen.push(new Request(input, init));
        return globalThis.fetch(input, init);
      },
    });
    await n8n.listExecutions({ projectId: 'p1' });
    expect(seen[0]?.headers.get('x-n8n-api-key')).toBe(API_KEY);
    expect(seen[0]?.headers.get('accept')).toBe('application/json');
    expect(fake.requests[0]?.query).toEqual({ limit: '250', projectId: 'p1' });
  });

  it('tolerates a base URL with trailing slashes or /api/v1 already on it', async () => {
    const fake = fakeN8n();
    fake.add();
    for (const baseUrl of [`${BASE_URL}/`, `${BASE_URL}/api/v1`, `${BASE_URL}/api/v1//`]) {
      const page = await client({ baseUrl }).listExecutions();
      expect(page.data).toHaveLength(1);
    }
    expect(fake.requests.map((r) => r.path)).toEqual(Array(3).fill('/api/v1/executions'));
  });

  it('rejects a page size n8n would not honour before sending anything', async () => {
    const fake = fakeN8n();
    await expect(client().listExecutions({ limit: 251 })).rejects.toThrow(RangeError);
    await expect(client().listExecutions({ limit: 0 })).rejects.toThrow(RangeError);
    expect(fake.requests).toHaveLength(0);
  });
});

describe('listExecutions: startedAfter', () => {
  it('passes startedAfter through in the UTC form n8n validates, and n8n filters inclusively', async () => {
    const fake = fakeN8n();
    fake.add({ startedAt: '2026-03-01T09:59:59.999Z' });
    fake.add({ startedAt: '2026-03-01T10:00:00.000Z' });
    fake.add({ startedAt: '2026-03-01T11:00:00.000Z' });

    const page = await client().listExecutions({ startedAfter: '2026-03-01T12:00:00+02:00' });

    expect(fake.requests[0]?.query.startedAfter).toBe('2026-03-01T10:00:00.000Z');
    expect(page.data.map((e) => e.id)).toEqual(['3', '2']);
  });

  it('reports an n8n older than 2.41 as unsupported_parameter, without retrying', async () => {
    const fake = fakeN8n({ supportsStartedAfter: false });
    fake.add();

    const error = await failureOf(
      client().listExecutions({ startedAfter: '2026-03-01T10:00:00.000Z' }),
    );

    expect(error.kind).toBe('unsupported_parameter');
    expect(error.status).toBe(400);
    expect(error.message).toBe(`n8n at ${BASE_URL} does not support startedAfter (n8n < 2.41)`);
    expect(fake.requests).toHaveLength(1);
    // The same n8n lists fine once the parameter is dropped.
    await expect(client().listExecutions()).resolves.toMatchObject({ data: [{ id: '1' }] });
  });

  it('rejects a startedAfter that is not a date before sending anything', async () => {
    const fake = fakeN8n();
    await expect(client().listExecutions({ startedAfter: 'last tuesday' })).rejects.toThrow(
      RangeError,
    );
    expect(fake.requests).toHaveLength(0);
  });
});

describe('listExecutions: failures that are final', () => {
  it.each([
    ['n8n ≥ 2.41', true],
    ['n8n < 2.41', false],
  ])('a wrong API key is unauthorized and not retried (%s)', async (_, supportsStartedAfter) => {
    const fake = fakeN8n({ supportsStartedAfter });
    const error = await failureOf(client({ apiKey: 'stale' }).listExecutions());
    expect(error.kind).toBe('unauthorized');
    expect(error.status).toBe(401);
    expect(error.message).toBe(
      `n8n at ${BASE_URL} rejected the API key (401): check the source's key`,
    );
    expect(error.message).not.toContain('stale');
    expect(fake.requests).toHaveLength(1);
  });

  it('a key without the execution scopes is forbidden and not retried', async () => {
    const fake = fakeN8n();
    fake.failNext({ kind: 'status', status: 403, body: { message: 'Forbidden' } });
    const error = await failureOf(client().listExecutions());
    expect(error.kind).toBe('forbidden');
    expect(error.message).toMatch(/execution:list/);
    expect(fake.requests).toHaveLength(1);
  });

  it('another 400 is bad_request with n8n’s own message', async () => {
    const fake = fakeN8n();
    fake.failNext({
      kind: 'status',
      status: 400,
      body: { message: 'An invalid cursor was provided' },
    });
    const error = await failureOf(client().listExecutions({ cursor: 'bm9wZQ==' }));
    expect(error.kind).toBe('bad_request');
    expect(error.message).toContain('An invalid cursor was provided');
    expect(fake.requests).toHaveLength(1);
  });

  it('an item it cannot read is malformed, names data[1].status, and is not retried', async () => {
    const fake = fakeN8n();
    const good = {
      id: '2',
      finished: true,
      mode: 'webhook',
      retryOf: null,
      retrySuccessId: null,
      status: 'success',
      startedAt: '2026-03-01T10:00:00.000Z',
      stoppedAt: '2026-03-01T10:00:01.000Z',
      workflowId: 'wf1',
      waitTill: null,
    };
    fake.failNext({
      kind: 'malformed',
      body: { data: [good, { ...good, id: '1', status: 'exploded' }], nextCursor: null },
    });
    const error = await failureOf(client().listExecutions());
    expect(error.kind).toBe('malformed');
    expect(error.message).toContain('data[1].status: expected one of canceled|crashed|');
    expect(error.message).toContain('(got "exploded")');
    expect(fake.requests).toHaveLength(1);
  });

  it('a body that is not JSON is malformed', async () => {
    const fake = fakeN8n();
    fake.failNext({ kind: 'malformed', body: '<html>maintenance</html>' });
    const error = await failureOf(client().listExecutions());
    expect(error.kind).toBe('malformed');
    expect(error.message).toContain('<html>maintenance</html>');
  });

  it('ignores fields newer n8n versions add', async () => {
    const fake = fakeN8n();
    fake.add();
    const page = await client().listExecutions();
    // The fake sends storedAt, jsonSizeBytes and workflowVersionId like n8n 2.41 does.
    expect(page.data[0]).not.toHaveProperty('storedAt');
    expect(page.data[0]).toMatchObject({ id: '1', status: 'success', mode: 'trigger' });
  });
});

describe('listExecutions: transient failures', () => {
  it('succeeds after two 500s', async () => {
    const fake = fakeN8n();
    fake.add();
    fake.failNext({ kind: 'status', status: 500 }, 2);
    const page = await client().listExecutions();
    expect(page.data).toHaveLength(1);
    expect(fake.requests).toHaveLength(3);
  });

  it('gives up with a server error after retries + 1 requests', async () => {
    const fake = fakeN8n();
    fake.failNext({ kind: 'status', status: 502, body: { message: 'Bad Gateway' } }, 10);
    const error = await failureOf(client({ retries: 2 }).listExecutions());
    expect(error.kind).toBe('server');
    expect(error.status).toBe(502);
    expect(error.message).toBe(`n8n at ${BASE_URL} failed with 502: Bad Gateway`);
    expect(fake.requests).toHaveLength(3);
  });

  it('honours Retry-After seconds on 429, capped by maxRetryDelayMs', async () => {
    const fake = fakeN8n();
    fake.add();
    fake.failNext({ kind: 'status', status: 429, headers: { 'Retry-After': '2' } });
    fake.failNext({ kind: 'status', status: 429, headers: { 'Retry-After': '120' } });
    const retries: RetryEvent[] = [];
    const slept: number[] = [];

    const page = await client({
      maxRetryDelayMs: 30_000,
      onRetry: (event) => retries.push(event),
      sleep: async (ms) => {
        slept.push(ms);
      },
    }).listExecutions();

    expect(page.data).toHaveLength(1);
    expect(fake.requests).toHaveLength(3);
    expect(retries.map((r) => [r.attempt, r.error.kind, r.error.retryAfterMs, r.delayMs])).toEqual([
      [1, 'rate_limited', 2_000, 2_000],
      [2, 'rate_limited', 120_000, 30_000],
    ]);
    // The backoff p-retry waits itself plus the top-up equals what n8n asked for.
    expect(slept).toHaveLength(2);
    expect(slept[0]).toBeGreaterThan(1_990);
    expect(slept[0]).toBeLessThanOrEqual(2_000);
  });

  it('reads Retry-After as an HTTP-date too', async () => {
    const fake = fakeN8n();
    fake.add();
    const inAnHour = new Date(Date.now() + 3_600_000).toUTCString();
    fake.failNext({ kind: 'status', status: 503, headers: { 'Retry-After': inAnHour } });
    const retries: RetryEvent[] = [];
    await client({
      maxRetryDelayMs: 4_000,
      onRetry: (event) => retries.push(event),
      sleep: async () => {},
    }).listExecutions();
    expect(retries).toHaveLength(1);
    expect(retries[0]?.error.kind).toBe('server');
    expect(retries[0]?.delayMs).toBe(4_000);
  });

  it('retries a network error', async () => {
    const fake = fakeN8n();
    fake.add();
    fake.failNext({ kind: 'network' });
    const page = await client().listExecutions();
    expect(page.data).toHaveLength(1);
    expect(fake.requests).toHaveLength(2);
  });

  it('reports a network error that persists', async () => {
    const fake = fakeN8n();
    fake.failNext({ kind: 'network' }, 5);
    const error = await failureOf(client({ retries: 1 }).listExecutions());
    expect(error.kind).toBe('network');
    expect(error.message).toMatch(new RegExp(`^could not reach n8n at ${BASE_URL}`));
    expect(fake.requests).toHaveLength(2);
  });

  it('times out a request n8n never answers, per attempt, and retries it', async () => {
    const fake = fakeN8n();
    fake.add();
    fake.failNext({ kind: 'hang' });
    const page = await client({ timeoutMs: 50 }).listExecutions();
    expect(page.data).toHaveLength(1);
    expect(fake.requests).toHaveLength(2);
  });

  it('reports timeout when every attempt hangs', async () => {
    const fake = fakeN8n();
    fake.failNext({ kind: 'hang' }, 5);
    const error = await failureOf(client({ timeoutMs: 50, retries: 1 }).listExecutions());
    expect(error.kind).toBe('timeout');
    expect(error.message).toBe(`n8n at ${BASE_URL} did not answer within 50 ms`);
    expect(fake.requests).toHaveLength(2);
  });

  it('stops at once when the caller aborts, even mid-backoff', async () => {
    const fake = fakeN8n();
    fake.failNext({ kind: 'status', status: 500 }, 10);
    const controller = new AbortController();
    const reason = new Error('sync run cancelled');
    const n8n = client({
      retries: 5,
      minRetryDelayMs: 60_000,
      maxRetryDelayMs: 60_000,
      onRetry: () => controller.abort(reason),
    });
    await expect(n8n.listExecutions({ signal: controller.signal })).rejects.toBe(reason);
    expect(fake.requests).toHaveLength(1);
  });

  it('stops at once when the caller aborts a request in flight', async () => {
    const fake = fakeN8n();
    fake.failNext({ kind: 'hang' });
    const controller = new AbortController();
    const reason = new Error('shutting down');
    const pending = client({ timeoutMs: 10_000 }).listExecutions({ signal: controller.signal });
    await expect.poll(() => fake.requests.length).toBe(1);
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(fake.requests).toHaveLength(1);
  });
});

describe('getExecution', () => {
  it('returns one execution', async () => {
    const fake = fakeN8n();
    const { id } = fake.add({ status: 'error', mode: 'webhook', workflowId: 'wfA' });
    const execution = await client().getExecution(id);
    expect(execution).toMatchObject({ id, status: 'error', mode: 'webhook', workflowId: 'wfA' });
    expect(fake.requests[0]).toEqual({ path: `/api/v1/executions/${id}`, query: {} });
  });

  it('returns null for an execution n8n does not have, pruned or never created', async () => {
    const fake = fakeN8n();
    fake.addMany(3);
    fake.prune({ keepNewest: 1 });
    expect(await client().getExecution('1')).toBeNull();
    expect(await client().getExecution('99')).toBeNull();
    expect(await client().getExecution('3')).toMatchObject({ id: '3' });
    expect(fake.requests).toHaveLength(3);
  });

  it('does not see an execution before it is committed', async () => {
    const fake = fakeN8n();
    const { id } = fake.add({ hidden: true });
    expect(await client().getExecution(id)).toBeNull();
    fake.reveal(id);
    expect(await client().getExecution(id)).toMatchObject({ id });
  });

  it('shares the error handling of the list', async () => {
    const fake = fakeN8n();
    fake.add();
    fake.failNext({ kind: 'status', status: 503 });
    await expect(client().getExecution('1')).resolves.toMatchObject({ id: '1' });
    const error = await failureOf(client({ apiKey: 'wrong' }).getExecution('1'));
    expect(error.kind).toBe('unauthorized');
    expect(fake.requests).toHaveLength(3);
  });

  it('refuses an id that is not an execution id', async () => {
    await expect(client().getExecution('../workflows')).rejects.toThrow(RangeError);
  });
});

describe('FakeN8n keeps n8n’s listing rules', () => {
  it('leaves running executions out of the list but serves them by id', async () => {
    const fake = fakeN8n();
    fake.add();
    const running = fake.add({ status: 'running' });
    fake.add({ status: 'new' });
    const n8n = client();
    expect((await n8n.listExecutions()).data.map((e) => e.id)).toEqual(['3', '1']);
    expect(await n8n.getExecution(running.id)).toMatchObject({
      status: 'running',
      stoppedAt: null,
    });
    fake.update(running.id, { status: 'success' });
    expect((await n8n.listExecutions()).data.map((e) => e.id)).toEqual(['3', '2', '1']);
  });

  it('lists a higher id before a lower one is committed, then the lower one appears', async () => {
    const fake = fakeN8n();
    const late = fake.add({ hidden: true });
    fake.add();
    const n8n = client();
    expect((await n8n.listExecutions()).data.map((e) => e.id)).toEqual(['2']);
    fake.reveal(late.id);
    expect((await n8n.listExecutions()).data.map((e) => e.id)).toEqual(['2', '1']);
  });

  it('prunes the oldest finished executions by count', async () => {
    const fake = fakeN8n();
    fake.add({ status: 'waiting' });
    fake.addMany(4);
    fake.prune({ keepNewest: 2 });
    expect((await client().listExecutions()).data.map((e) => e.id)).toEqual(['5', '4', '1']);
  });
});
