import { describe, expect, it } from 'vitest';
import { createN8nClient } from '../../src/n8n/client.ts';
import { FakeN8n } from '../support/fake-n8n.ts';
import { useMockServer } from '../support/msw.ts';

/**
 * The n8n double keeps to what a real n8n (2.40.7, Postgres-backed) was seen doing: ids
 * assigned at queue time, running executions unlisted but fetchable by id, DELETE for good,
 * count pruning soft-deleting the oldest finished executions (EXECUTIONS_DATA_PRUNE_MAX_COUNT).
 */

const BASE_URL = 'https://double.n8n.example';
const API_KEY = 'n8n_api_double_key';
const server = useMockServer();

function setUp() {
  const fake = new FakeN8n({ baseUrl: BASE_URL, apiKey: API_KEY });
  server.use(...fake.handlers());
  const n8n = createN8nClient({ baseUrl: BASE_URL, apiKey: API_KEY, retries: 0, timeoutMs: 5000 });
  const listed = async () => (await n8n.listExecutions({ limit: 250 })).data.map((e) => e.id);
  return { fake, n8n, listed };
}

describe('the n8n double', () => {
  it('assigns ids at queue time: a queued execution has its id and no startedAt yet', () => {
    const { fake } = setUp();
    const queued = fake.add({ status: 'new' });
    const later = fake.add();
    expect(Number(later.id)).toBeGreaterThan(Number(queued.id));
    expect(queued.startedAt).toBeNull();
  });

  it('does not list running executions, but answers them by id', async () => {
    const { fake, n8n, listed } = setUp();
    fake.add();
    const running = fake.add({ status: 'running' });
    fake.add();
    expect(await listed()).toEqual(['3', '1']);
    expect(await n8n.getExecution(running.id)).toMatchObject({ id: running.id, status: 'running' });
  });

  it('removes an execution for good on DELETE: 404 by id and unlisted afterwards', async () => {
    const { fake, n8n, listed } = setUp();
    fake.addMany(3);
    const deleted = await fetch(`${BASE_URL}/api/v1/executions/2`, {
      method: 'DELETE',
      headers: { 'X-N8N-API-KEY': API_KEY },
    });
    expect(deleted.status).toBe(200);
    expect(await deleted.json()).toMatchObject({ id: '2' });
    expect(await n8n.getExecution('2')).toBeNull();
    expect(await listed()).toEqual(['3', '1']);
    const again = await fetch(`${BASE_URL}/api/v1/executions/2`, {
      method: 'DELETE',
      headers: { 'X-N8N-API-KEY': API_KEY },
    });
    expect(again.status).toBe(404);
    expect(await again.json()).toEqual({ message: 'Not Found' });
  });

  it('prunes the oldest finished executions beyond the count, never an unfinished one', async () => {
    const { fake, n8n, listed } = setUp();
    const waiting = fake.add({ status: 'waiting' });
    fake.addMany(5);
    fake.prune({ keepNewest: 2 });
    expect(await listed()).toEqual(['6', '5', '1']);
    expect(await n8n.getExecution('2')).toBeNull();
    expect(await n8n.getExecution(waiting.id)).toMatchObject({ status: 'waiting' });
  });
});
