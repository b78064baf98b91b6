import { randomBytes } from 'node:crypto';
import { http, passthrough } from 'msw';
import { setupServer } from 'msw/node';
import { afterAll, beforeAll, expect } from 'vitest';
import {
  type CollectionSettings,
  type RunCollectionInput,
  runCollection,
} from '../../src/collector/run-collection.ts';
import { parseKeyring } from '../../src/crypto/keyring.ts';
import { sealApiKey } from '../../src/n8n/api-key.ts';
import { createN8nClient } from '../../src/n8n/client.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { FakeN8n, type FakeN8nOptions } from './fake-n8n.ts';
import { createPlan, createTenant } from './fixtures.ts';
import { succeeded } from './result.ts';
import { serviceClient, stack, superuser, uniqueId } from './stack.ts';

export const keyring = parseKeyring(`k1:${randomBytes(32).toString('base64')}`);

/** msw for this test file; every fake n8n registers its handlers here. The local stack is ours: passed through. */
export function useN8nServer() {
  const server = setupServer(http.all(`${stack.supabaseUrl}/*`, () => passthrough()));
  beforeAll(() => server.listen({ onUnhandledFrame: 'error' } as never));
  afterAll(() => server.close());
  return server;
}

export interface TestSource {
  sourceId: string;
  tenantId: string;
  planId: string;
  fake: FakeN8n;
}

export async function createSource(
  server: ReturnType<typeof setupServer>,
  options: { planId?: string; tenantId?: string; fake?: Partial<FakeN8nOptions> } = {},
): Promise<TestSource> {
  const tenant = options.tenantId
    ? { id: options.tenantId, plan_id: options.planId as string }
    : await createTenant(
        options.planId ?? (await createPlan({ included_executions: 1_000_000 })).id,
      );
  const apiKey = `n8n_api_${randomBytes(8).toString('hex')}`;
  const baseUrl = `https://${uniqueId('n8n')}.n8n.test`;
  const fake = new FakeN8n({ baseUrl, apiKey, ...options.fake });
  server.use(...fake.handlers());
  const { data, error } = await serviceClient().rpc('add_n8n_source', {
    tenant_id: tenant.id,
    name: 'main',
    base_url: baseUrl,
    api_key_ciphertext: sealApiKey(keyring, tenant.id, apiKey),
  });
  if (error || !data) throw new Error(`add_n8n_source: ${error?.message}`);
  return { sourceId: data.id, tenantId: tenant.id, planId: tenant.plan_id, fake };
}

export const testSettings: CollectionSettings = {
  budgetMs: 60_000,
  concurrency: 2,
  leaseSeconds: 60,
  sliceSources: 100,
  openMaxAgeMs: 14 * 24 * 3600_000,
  revisitBatch: 500,
  probeBatch: 1000,
  probeConcurrency: 4,
};

/**
 * The collector's n8n client with test-speed retries, optionally over a fault-injecting
 * fetch or with a shorter timeout (for an n8n that hangs).
 */
export const fastN8nClient =
  (options: { fetch?: typeof fetch; timeoutMs?: number } = {}) =>
  ({ baseUrl, apiKey }: { baseUrl: string; apiKey: string }) =>
    createN8nClient({
      baseUrl,
      apiKey,
      retries: 2,
      minRetryDelayMs: 1,
      maxRetryDelayMs: 5,
      timeoutMs: options.timeoutMs ?? 2000,
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });

/** A collector run over the given sources (never other test files' sources). */
export function collect(
  sources: TestSource[],
  overrides: Partial<Omit<RunCollectionInput, 'settings'>> & {
    settings?: Partial<CollectionSettings>;
  } = {},
) {
  const { settings, ...rest } = overrides;
  return succeeded(
    runCollection({
      db: serviceClient(),
      keyring,
      log: silentLogger,
      trigger: 'manual',
      createN8nClient: fastN8nClient(),
      select: { sourceIds: sources.map((s) => s.sourceId) },
      ...rest,
      settings: { ...testSettings, ...settings },
    }),
  );
}

export interface Counters {
  executions: number;
  billable: number;
  billable_success: number;
  billable_failed: number;
}

/** Totals over all periods of a tenant, read as the superuser (the ground truth). */
export async function countersOf(tenantId: string): Promise<Counters> {
  const { rows } = await superuser().query(
    `select coalesce(sum(executions), 0)::int as executions, coalesce(sum(billable), 0)::int as billable,
            coalesce(sum(billable_success), 0)::int as billable_success,
            coalesce(sum(billable_failed), 0)::int as billable_failed
     from public.usage_counters where tenant_id = $1`,
    [tenantId],
  );
  return rows[0];
}

/** The n8n address the source was registered with, for handlers that stand in for that n8n. */
export async function baseUrlOf(source: TestSource): Promise<string> {
  const { rows } = await superuser().query(
    'select base_url from public.n8n_sources where id = $1',
    [source.sourceId],
  );
  return rows[0].base_url;
}

/** The collector's state row of a source (walk cursor, floor, failures), read as the superuser. */
export async function sourceState(sourceId: string) {
  const { rows } = await superuser().query(
    'select * from public.collector_source_state where source_id = $1',
    [sourceId],
  );
  return rows[0];
}

/**
 * Resolves when the nth list request reaches the source's n8n: the moment a test that cuts a
 * run's budget knows the run has started to wait on that n8n, without timing anything.
 */
export function listRequest(source: TestSource, nth: number): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if (source.fake.requests.filter((r) => r.path.endsWith('/executions')).length >= nth) {
        resolve();
      } else setTimeout(check, 10);
    };
    check();
  });
}

export async function storedExecutionIds(sourceId: string): Promise<number[]> {
  const { rows } = await superuser().query(
    'select execution_id::int as id from public.executions where source_id = $1 order by 1',
    [sourceId],
  );
  return rows.map((r) => r.id);
}

/** n8n's billable rule, applied to the fake's current data: what the counters must say. */
export function expectedBillable(fake: FakeN8n): number {
  return fake
    .all()
    .filter((e) => ['cli', 'retry', 'trigger', 'webhook', 'evaluation'].includes(e.mode))
    .filter((e) => ['success', 'error', 'crashed'].includes(e.status)).length;
}

/** Every execution in the source's n8n is stored once and counted once, billable as n8n's rule says. */
export async function expectCollectedExactly(source: TestSource): Promise<void> {
  const executions = source.fake.all();
  expect(await storedExecutionIds(source.sourceId)).toEqual(
    executions.map((e) => Number(e.id)).sort((a, b) => a - b),
  );
  expect(await countersOf(source.tenantId)).toMatchObject({
    executions: executions.length,
    billable: expectedBillable(source.fake),
  });
}
