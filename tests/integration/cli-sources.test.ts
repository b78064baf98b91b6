import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { openApiKey } from '../../src/n8n/api-key.ts';
import { FakeTerminal, runCliWith } from '../support/cli.ts';
import { keyring, useN8nServer } from '../support/collector.ts';
import { FakeN8n } from '../support/fake-n8n.ts';
import { createTenant } from '../support/fixtures.ts';
import { superuser, uniqueId } from '../support/stack.ts';

const server = useN8nServer();

const cli = runCliWith;

const recent = (s: number) => new Date(Date.now() - s * 1000).toISOString();

/** A tenant and an n8n instance that knows `apiKey`, not yet a source. */
async function instance() {
  const tenant = await createTenant();
  const apiKey = `n8n_api_${randomBytes(8).toString('hex')}`;
  const baseUrl = `https://${uniqueId('n8n')}.n8n.test`;
  const fake = new FakeN8n({ baseUrl, apiKey });
  server.use(...fake.handlers());
  return { tenant, apiKey, baseUrl, fake };
}

async function sourcesOf(tenantId: string) {
  const { rows } = await superuser().query(
    'select * from public.n8n_sources where tenant_id = $1',
    [tenantId],
  );
  return rows;
}

describe('flowmeter sources add', () => {
  it('tests the connection, then stores the source with its key encrypted', async () => {
    const { tenant, apiKey, baseUrl, fake } = await instance();
    fake.addMany(3, (i) => ({ startedAt: recent(60 - i) }));
    const result = await cli(
      [
        'sources',
        'add',
        '--tenant',
        tenant.external_ref as string,
        '--url',
        `${baseUrl}/api/v1/`,
        '--api-key',
        '-',
      ],
      { stdin: `${apiKey}\n` },
    );
    expect(result.code).toBe(EXIT.ok);
    expect(result.out).toMatch(/│ connection │ ok, latest execution #3 \(success/);
    expect(result.err).toMatch(/flowmeter collect --source /);
    expect(fake.requests).toEqual([{ path: '/api/v1/executions', query: { limit: '1' } }]);

    const [stored] = await sourcesOf(tenant.id);
    expect(stored).toMatchObject({ base_url: baseUrl, name: new URL(baseUrl).host, enabled: true });
    expect(stored.api_key_ciphertext).not.toContain(apiKey);
    expect(openApiKey(keyring, tenant.id, stored.api_key_ciphertext)).toBe(apiKey);
  });

  it('stores nothing when n8n rejects the key, and says what to do', async () => {
    const { tenant, baseUrl } = await instance();
    const result = await cli([
      'sources',
      'add',
      '--tenant',
      tenant.id,
      '--url',
      baseUrl,
      '--api-key',
      'wrong-key',
    ]);
    expect(result.code).toBe(EXIT.failed);
    expect(result.err).toMatch(
      /rejected the API key \(401\).*Settings → n8n API.*Nothing was stored/,
    );
    expect(await sourcesOf(tenant.id)).toEqual([]);
  });

  it('stores nothing when n8n cannot be reached', async () => {
    const { tenant, apiKey, baseUrl, fake } = await instance();
    fake.failNext({ kind: 'network' }, 5);
    const result = await cli([
      'sources',
      'add',
      '--tenant',
      tenant.id,
      '--url',
      baseUrl,
      '--api-key',
      apiKey,
    ]);
    expect(result.code).toBe(EXIT.failed);
    expect(result.err).toMatch(/could not reach n8n at .*check the URL.*Nothing was stored/);
    expect(await sourcesOf(tenant.id)).toEqual([]);
  });

  it('with --no-test stores it without calling n8n; a second one for the same URL is refused', async () => {
    const { tenant, baseUrl, fake } = await instance();
    const args = [
      'sources',
      'add',
      '--tenant',
      tenant.id,
      '--url',
      baseUrl,
      '--api-key',
      'k',
      '--no-test',
    ];
    const first = await cli([...args, '--name', 'prod', '--project', 'p1', '--json']);
    expect(first.code).toBe(EXIT.ok);
    expect(JSON.parse(first.out)).toMatchObject({ name: 'prod', project_id: 'p1', tested: false });
    expect(JSON.parse(first.out)).not.toHaveProperty('api_key_ciphertext');
    expect(fake.requests).toEqual([]);

    const again = await cli([...args, '--project', 'p1']);
    expect(again.code).toBe(EXIT.usage);
    expect(again.err).toMatch(/already has a source for .* and project p1/);
    expect(await sourcesOf(tenant.id)).toHaveLength(1);
  });

  it.each([
    [['--url', 'ftp://n8n.example'], /n8n instance's URL/],
    [['--url', 'not a url'], /n8n instance's URL/],
    [
      ['--tenant', 'no-such-tenant'],
      /no tenant has the id or external reference "no-such-tenant": `flowmeter tenants list`/,
    ],
    [['--api-key', '-'], /read nothing from standard input/],
  ])('exits 2 for %j, storing nothing', async (args, message) => {
    const { tenant, baseUrl, fake } = await instance();
    const defaults: Record<string, string> = {
      '--tenant': tenant.id,
      '--url': baseUrl,
      '--api-key': 'k',
    };
    for (let i = 0; i < args.length; i += 2) defaults[args[i] as string] = args[i + 1] as string;
    const result = await cli(['sources', 'add', ...Object.entries(defaults).flat()]);
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(message);
    expect(fake.requests).toEqual([]);
    expect(await sourcesOf(tenant.id)).toEqual([]);
  });

  it('exits 2 naming FLOWMETER_ENCRYPTION_KEYS when it is missing', async () => {
    const { tenant, baseUrl } = await instance();
    const result = await cli(
      ['sources', 'add', '--tenant', tenant.id, '--url', baseUrl, '--api-key', 'k'],
      {
        env: { FLOWMETER_ENCRYPTION_KEYS: undefined },
      },
    );
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(/FLOWMETER_ENCRYPTION_KEYS is required/);
    expect(await sourcesOf(tenant.id)).toEqual([]);
  });
});

describe('flowmeter sources test and list', () => {
  async function addedSource() {
    const setup = await instance();
    const added = await cli([
      'sources',
      'add',
      '--tenant',
      setup.tenant.id,
      '--url',
      setup.baseUrl,
      '--api-key',
      setup.apiKey,
      '--json',
    ]);
    expect(added.code).toBe(EXIT.ok);
    return { ...setup, sourceId: (JSON.parse(added.out) as { id: string }).id };
  }

  it('decrypts the key and probes n8n: 0 when it answers, 1 when it does not', async () => {
    const { sourceId, fake } = await addedSource();
    const ok = await cli(['sources', 'test', sourceId]);
    expect(ok.code).toBe(EXIT.ok);
    expect(ok.out).toMatch(/^ok: https:\/\/.* answered; no executions yet$/);

    fake.failNext({ kind: 'status', status: 401, body: { message: 'Unauthorized' } });
    const refused = await cli(['sources', 'test', sourceId, '--json']);
    expect(refused.code).toBe(EXIT.failed);
    expect(JSON.parse(refused.out)).toMatchObject({ source_id: sourceId, ok: false });
  });

  it('exits 1 when the key cannot be decrypted with the configured keys', async () => {
    const { sourceId } = await addedSource();
    const other = `k2:${randomBytes(32).toString('base64')}`;
    const result = await cli(['sources', 'test', sourceId], {
      env: { FLOWMETER_ENCRYPTION_KEYS: other },
    });
    expect(result.code).toBe(EXIT.failed);
    expect(result.err).toMatch(/cannot decrypt the source's API key: encrypted with key "k1"/);
  });

  it('exits 2 for an unknown or malformed source id', async () => {
    const unknown = await cli(['sources', 'test', '00000000-0000-4000-8000-000000000000']);
    expect(unknown.code).toBe(EXIT.usage);
    expect(unknown.err).toMatch(/no source has the id .*`flowmeter sources list`/);
    expect((await cli(['sources', 'test', 'abc'])).code).toBe(EXIT.usage);
  });

  it('lists sources with lag, failures, open executions and gaps', async () => {
    const { tenant, sourceId, fake } = await addedSource();
    fake.addMany(4, (i) => ({ startedAt: recent(30 - i) }));
    fake.add({ status: 'waiting', startedAt: recent(5) });
    expect((await cli(['collect', '--source', sourceId])).code).toBe(EXIT.ok);

    const healthy = JSON.parse(
      (await cli(['sources', 'list', '--tenant', tenant.id, '--json'])).out,
    );
    expect(healthy).toMatchObject([
      { id: sourceId, consecutive_failures: 0, last_error: null, open_executions: 1, gaps: 0 },
    ]);
    expect(healthy[0].lag_seconds).toBeLessThan(60);

    fake.failNext({ kind: 'status', status: 401, body: { message: 'Unauthorized' } }, 5);
    expect((await cli(['collect', '--source', sourceId])).code).toBe(EXIT.failed);
    const table = await cli(['sources', 'list', '--tenant', tenant.external_ref as string]);
    expect(table.code).toBe(EXIT.ok);
    expect(table.out).toMatch(
      new RegExp(
        `│ ${sourceId} │ ${tenant.name}.*│ yes\\s+│ .*Z │ \\d+s\\s+│ 1\\s+│ n8n rejected the API key \\(401\\)`,
      ),
    );
  });

  it('collect draws a progress bar on a terminal, with each outcome above it', async () => {
    const { sourceId, fake } = await addedSource();
    fake.addMany(3, (i) => ({ startedAt: recent(30 - i) }));
    const terminal = new FakeTerminal();
    const result = await cli(['collect', '--source', sourceId], { stderr: terminal });
    expect(result.code).toBe(EXIT.ok);
    expect(terminal.text).toMatch(/✓ .*: 3 new executions, 3 billable/);
    expect(terminal.text).toMatch(/collecting \[█+\] 1\/1 sources/);
    expect(result.err).toMatch(/^run .*: 1 ok, 0 failed, 3 new executions, 3 billable$/);
  });

  it('exits 3 when the database cannot be reached', async () => {
    const result = await cli(['sources', 'list'], { env: { SUPABASE_URL: 'http://127.0.0.1:9' } });
    expect(result.code).toBe(EXIT.unavailable);
  });
});
