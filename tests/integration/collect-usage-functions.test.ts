import { randomBytes, randomUUID } from 'node:crypto';
import { HttpResponse, http } from 'msw';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { config as scheduledConfig } from '../../netlify/functions/collect-usage.mts';
import collectUsageBackground from '../../netlify/functions/collect-usage-background.mts';
import {
  BACKGROUND_FUNCTION_PATH,
  backgroundHandOff,
  INTERNAL_SECRET_HEADER,
} from '../../src/collector/from-config.ts';
import { loadCollectorConfig } from '../../src/config/env.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { countersOf, createSource, keyring, useN8nServer } from '../support/collector.ts';
import { claimSource } from '../support/leases.ts';
import { stack, superuser } from '../support/stack.ts';

const server = useN8nServer();
const secret = randomBytes(32).toString('hex');
const siteUrl = 'https://flowmeter-test.netlify.app';

beforeEach(() => {
  vi.stubEnv('SUPABASE_URL', stack.supabaseUrl);
  vi.stubEnv('SUPABASE_SERVICE_ROLE_KEY', stack.serviceRoleKey);
  vi.stubEnv('FLOWMETER_ENCRYPTION_KEYS', `k1:${keyring.keys.get('k1')?.toString('base64')}`);
  vi.stubEnv('FLOWMETER_INTERNAL_SECRET', secret);
  vi.stubEnv('URL', siteUrl);
  vi.stubEnv('LOG_LEVEL', 'error');
});
afterEach(() => {
  vi.unstubAllEnvs();
});

const post = (
  body: unknown,
  headers: Record<string, string> = { [INTERNAL_SECRET_HEADER]: secret },
) =>
  collectUsageBackground(
    new Request(`${siteUrl}${BACKGROUND_FUNCTION_PATH}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    }),
  );

describe('collect-usage (scheduled)', () => {
  it('runs every 10 minutes', () => {
    expect(scheduledConfig.schedule).toBe('*/10 * * * *');
  });
});

describe('collect-usage-background', () => {
  it('continues a handed-over walk with its lease', async () => {
    const source = await createSource(server);
    source.fake.addMany(40, (i) => ({
      startedAt: new Date(Date.now() - (100 - i) * 1000).toISOString(),
    }));
    const lease = await claimSource(source.sourceId);
    const response = await post({
      run_id: randomUUID(),
      leases: [{ source_id: lease.source_id, lease_token: lease.lease_token }],
    });
    expect(response.status).toBe(202);
    expect((await countersOf(source.tenantId)).billable).toBe(40);
    const { rows } = await superuser().query(
      'select lease_token from public.collector_source_state where source_id = $1',
      [source.sourceId],
    );
    expect(rows[0].lease_token).toBeNull();
  });

  it('does nothing for a lease it does not hold', async () => {
    const source = await createSource(server);
    source.fake.addMany(5, (i) => ({
      startedAt: new Date(Date.now() - (10 - i) * 1000).toISOString(),
    }));
    await claimSource(source.sourceId);
    const response = await post({
      run_id: randomUUID(),
      leases: [{ source_id: source.sourceId, lease_token: randomUUID() }],
    });
    expect(response.status).toBe(202);
    expect((await countersOf(source.tenantId)).executions).toBe(0);
  });

  it.each([
    ['no secret', {}],
    ['a wrong secret', { [INTERNAL_SECRET_HEADER]: 'x'.repeat(64) }],
  ])('answers 401 with %s, changing nothing', async (_, headers) => {
    const runs = (await superuser().query('select count(*)::int as n from public.collector_runs'))
      .rows[0].n;
    const response = await post(
      { run_id: randomUUID(), leases: [{ source_id: randomUUID(), lease_token: randomUUID() }] },
      headers,
    );
    expect(response.status).toBe(401);
    expect(
      (await superuser().query('select count(*)::int as n from public.collector_runs')).rows[0].n,
    ).toBe(runs);
  });

  it('answers 401 when no internal secret is configured at all', async () => {
    vi.stubEnv('FLOWMETER_INTERNAL_SECRET', '');
    expect(
      (await post({ run_id: randomUUID(), leases: [] }, { [INTERNAL_SECRET_HEADER]: '' })).status,
    ).toBe(401);
  });

  it.each([
    ['non-JSON', 'not json'],
    ['no leases', { run_id: randomUUID(), leases: [] }],
    [
      'a bad source id',
      { run_id: randomUUID(), leases: [{ source_id: 'x', lease_token: randomUUID() }] },
    ],
  ])('answers 400 for %s', async (_, body) => {
    expect((await post(body)).status).toBe(400);
  });
});

describe('background hand-off', () => {
  it('posts the leases with the internal secret and reports whether Netlify accepted them', async () => {
    let received: { secret: string | null; body: unknown } | undefined;
    server.use(
      http.post(`${siteUrl}${BACKGROUND_FUNCTION_PATH}`, async ({ request }) => {
        received = {
          secret: request.headers.get(INTERNAL_SECRET_HEADER),
          body: await request.json(),
        };
        return new HttpResponse(null, { status: 202 });
      }),
    );
    const handOff = backgroundHandOff(loadCollectorConfig(), silentLogger);
    const leases = [{ source_id: randomUUID(), lease_token: randomUUID() }];
    expect(await handOff('run-1', leases)).toEqual({ ok: true, value: null });
    expect(received).toEqual({ secret, body: { run_id: 'run-1', leases } });
  });

  it('declines without a site URL or secret, so the caller frees the leases', async () => {
    vi.stubEnv('FLOWMETER_INTERNAL_SECRET', '');
    expect(await backgroundHandOff(loadCollectorConfig(), silentLogger)('run', [])).toMatchObject({
      ok: false,
      error: { code: 'not_configured' },
    });
  });
});
