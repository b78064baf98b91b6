import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { parseKeyring } from '../../src/crypto/keyring.ts';
import { openApiKey, sealApiKey } from '../../src/n8n/api-key.ts';
import { FakeTerminal, runCliWith } from '../support/cli.ts';
import { keyring, useN8nServer } from '../support/collector.ts';
import { FakeN8n } from '../support/fake-n8n.ts';
import { waitForLockWait } from '../support/faults.ts';
import { createTenant, recent } from '../support/fixtures.ts';
import { inTransaction, serviceClient, superuser, uniqueId } from '../support/stack.ts';

const server = useN8nServer();

const cli = runCliWith;

type Tenant = Awaited<ReturnType<typeof createTenant>>;

/** A tenant (new, or `existing`) and an n8n instance that knows `apiKey`, not yet a source. */
async function instance(existing?: Tenant) {
  const tenant = existing ?? (await createTenant());
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

/** `flowmeter sources add` for a tenant, URL and key; further flags follow. */
const addArgs = (tenant: string, url: string, apiKey: string) => [
  'sources',
  'add',
  '--tenant',
  tenant,
  '--url',
  url,
  '--api-key',
  apiKey,
];

/**
 * An instance added as a source through the CLI (for a new tenant, or `tenant`),
 * connection tested; with `storedKey`, that key is stored instead of the one the instance
 * accepts, untested.
 */
async function addedSource(options: { storedKey?: string; tenant?: Tenant } = {}) {
  const { storedKey, tenant } = options;
  const setup = await instance(tenant);
  const added = await cli([
    ...addArgs(setup.tenant.id, setup.baseUrl, storedKey ?? setup.apiKey),
    ...(storedKey ? ['--no-test'] : []),
    '--json',
  ]);
  expect(added.code).toBe(EXIT.ok);
  return { ...setup, sourceId: (JSON.parse(added.out) as { id: string }).id };
}

describe('flowmeter sources add', () => {
  it('tests the connection, then stores the source with its key encrypted', async () => {
    const { tenant, apiKey, baseUrl, fake } = await instance();
    fake.addMany(3, (i) => ({ startedAt: recent(60 - i) }));
    const result = await cli(addArgs(tenant.external_ref as string, `${baseUrl}/api/v1/`, '-'), {
      stdin: `${apiKey}\n`,
    });
    expect(result.code).toBe(EXIT.ok);
    expect(result.out).toMatch(/│ connection │ ok, latest execution #3 \(success/);
    expect(result.err).toMatch(/flowmeter collect --source /);
    expect(fake.requests).toEqual([{ path: '/api/v1/executions', query: { limit: '1' } }]);

    const [stored] = await sourcesOf(tenant.id);
    expect(stored).toMatchObject({ base_url: baseUrl, name: new URL(baseUrl).host, enabled: true });
    expect(stored.api_key_ciphertext).not.toContain(apiKey);
    expect(openApiKey(keyring, tenant.id, stored.api_key_ciphertext)).toBe(apiKey);
  });

  it.each([
    {
      failure: 'n8n rejects the key, and says what to do',
      arrange: (_fake: FakeN8n) => {},
      apiKey: (_accepted: string) => 'wrong-key',
      message: /rejected the API key \(401\).*Settings → n8n API.*Nothing was stored/,
    },
    {
      failure: 'n8n cannot be reached',
      arrange: (fake: FakeN8n) => fake.failNext({ kind: 'network' }, 5),
      apiKey: (accepted: string) => accepted,
      message: /could not reach n8n at .*check the URL.*Nothing was stored/,
    },
  ])('stores nothing when $failure', async ({ arrange, apiKey, message }) => {
    const setup = await instance();
    arrange(setup.fake);
    const result = await cli(addArgs(setup.tenant.id, setup.baseUrl, apiKey(setup.apiKey)));
    expect(result.code).toBe(EXIT.failed);
    expect(result.err).toMatch(message);
    expect(await sourcesOf(setup.tenant.id)).toEqual([]);
  });

  it('with --no-test stores it without calling n8n; a second one for the same URL is refused', async () => {
    const { tenant, baseUrl, fake } = await instance();
    const args = [...addArgs(tenant.id, baseUrl, 'k'), '--no-test'];
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
    expect(terminal.text).toMatch(/collecting \[█+\] 1\/1 source /);
    expect(result.err).toMatch(/^run .*: 1 ok, 0 failed, 3 new executions, 3 billable$/);
  });

  it('exits 3 when the database cannot be reached', async () => {
    const result = await cli(['sources', 'list'], { env: { SUPABASE_URL: 'http://127.0.0.1:9' } });
    expect(result.code).toBe(EXIT.unavailable);
  });
});

describe('flowmeter sources enable, disable, set-key and reseal', () => {
  async function stateOf(sourceId: string) {
    const { rows } = await superuser().query(
      `select s.enabled, s.api_key_ciphertext, st.next_attempt_at <= now() as due,
              st.consecutive_failures
       from public.n8n_sources s left join public.collector_source_state st on st.source_id = s.id
       where s.id = $1`,
      [sourceId],
    );
    return rows[0];
  }

  const storedExecutions = async (sourceId: string) =>
    (
      await superuser().query(
        'select count(*)::int as n from public.executions where source_id = $1',
        [sourceId],
      )
    ).rows[0].n;

  it('a disabled source is not collected; enabled again, it catches up from where it stopped', async () => {
    const { sourceId, fake } = await addedSource();
    fake.addMany(2, (i) => ({ startedAt: recent(60 - i) }));
    expect((await cli(['collect', '--source', sourceId])).code).toBe(EXIT.ok);
    expect(await storedExecutions(sourceId)).toBe(2);

    const disabled = await cli(['sources', 'disable', sourceId]);
    expect(disabled.code).toBe(EXIT.ok);
    expect(disabled.out).toMatch(/: disabled$/);
    fake.addMany(3, (i) => ({ startedAt: recent(30 - i) }));
    await cli(['collect', '--source', sourceId]);
    expect(await storedExecutions(sourceId)).toBe(2);
    expect((await stateOf(sourceId)).enabled).toBe(false);

    // Failing before it was disabled: enabling makes it due now, not after the backoff.
    await superuser().query(
      "update public.collector_source_state set next_attempt_at = now() + interval '1 hour' where source_id = $1",
      [sourceId],
    );
    const enabled = await cli(['sources', 'enable', sourceId, '--json']);
    expect(enabled.code).toBe(EXIT.ok);
    expect(JSON.parse(enabled.out)).toMatchObject({ id: sourceId, enabled: true });
    expect(JSON.parse(enabled.out)).not.toHaveProperty('api_key_ciphertext');
    expect(await stateOf(sourceId)).toMatchObject({ enabled: true, due: true });
    expect((await cli(['collect', '--source', sourceId])).code).toBe(EXIT.ok);
    expect(await storedExecutions(sourceId)).toBe(5);
  });

  it('set-key tests the new key, stores it encrypted and ends the failure backoff', async () => {
    const { tenant, sourceId, apiKey, fake } = await addedSource({ storedKey: 'revoked-key' });
    fake.addMany(2, (i) => ({ startedAt: recent(60 - i) }));
    expect((await cli(['collect', '--source', sourceId])).code).toBe(EXIT.failed);
    expect(await stateOf(sourceId)).toMatchObject({ due: false, consecutive_failures: 1 });

    const result = await cli(['sources', 'set-key', sourceId, '--api-key', '-'], {
      stdin: `${apiKey}\n`,
    });
    expect(result.code).toBe(EXIT.ok);
    expect(result.out).toMatch(/key replaced; connection ok, latest execution #2/);
    const state = await stateOf(sourceId);
    expect(state.due).toBe(true);
    expect(openApiKey(keyring, tenant.id, state.api_key_ciphertext)).toBe(apiKey);
    expect((await cli(['collect', '--source', sourceId])).code).toBe(EXIT.ok);
    expect(await storedExecutions(sourceId)).toBe(2);
  });

  it('set-key on a disabled source says to enable it, not to collect', async () => {
    const { sourceId, apiKey } = await addedSource();
    expect((await cli(['sources', 'disable', sourceId])).code).toBe(EXIT.ok);
    const result = await cli(['sources', 'set-key', sourceId, '--api-key', apiKey]);
    expect(result.code).toBe(EXIT.ok);
    expect(result.err).toBe(
      `The source is disabled: \`flowmeter sources enable ${sourceId}\` collects from it again`,
    );
  });

  it('set-key keeps the stored key when n8n rejects the new one, or the source is unknown', async () => {
    const { sourceId } = await addedSource();
    const before = (await stateOf(sourceId)).api_key_ciphertext;
    const rejected = await cli(['sources', 'set-key', sourceId, '--api-key', 'wrong-key']);
    expect(rejected.code).toBe(EXIT.failed);
    expect(rejected.err).toMatch(/rejected the API key \(401\).*The stored key was not changed/);
    expect((await stateOf(sourceId)).api_key_ciphertext).toBe(before);

    const unknown = '00000000-0000-4000-8000-000000000000';
    for (const args of [
      ['sources', 'set-key', unknown, '--api-key', 'k', '--no-test'],
      ['sources', 'disable', unknown],
    ]) {
      const result = await cli(args);
      expect(result.code).toBe(EXIT.usage);
      expect(result.err).toMatch(/`flowmeter sources list`/);
    }
    expect((await cli(['sources', 'enable', 'not-a-uuid'])).code).toBe(EXIT.usage);
  });

  it('reseal re-encrypts every key under the new first key; the old key can then go', async () => {
    const first = await addedSource();
    await addedSource({ tenant: first.tenant });
    const oldKeys = `k1:${keyring.keys.get('k1')?.toString('base64')}`;
    const newKeys = `k2:${randomBytes(32).toString('base64')},${oldKeys}`;

    const resealed = await cli(['sources', 'reseal', '--tenant', first.tenant.id], {
      env: { FLOWMETER_ENCRYPTION_KEYS: newKeys },
    });
    expect(resealed.code).toBe(EXIT.ok);
    expect(resealed.out).toBe('2 of 2 source keys re-encrypted under "k2"; 0 already were');
    expect(resealed.err).toMatch(/other FLOWMETER_ENCRYPTION_KEYS entries can be removed/);
    for (const source of await sourcesOf(first.tenant.id)) {
      expect(source.api_key_ciphertext).toMatch(/^fm1\.k2\./);
    }
    // Without the old key, the sources still decrypt and answer.
    const onlyNew = newKeys.split(',')[0] as string;
    const tested = await cli(['sources', 'test', first.sourceId], {
      env: { FLOWMETER_ENCRYPTION_KEYS: onlyNew },
    });
    expect(tested.code).toBe(EXIT.ok);
    const again = await cli(['sources', 'reseal', '--tenant', first.tenant.id, '--json'], {
      env: { FLOWMETER_ENCRYPTION_KEYS: onlyNew },
    });
    expect(JSON.parse(again.out)).toEqual({
      key: 'k2',
      sources: 2,
      resealed: 0,
      changedMeanwhile: 0,
      undecryptable: [],
    });
  });

  it('reseal reports keys no configured key decrypts, and leaves them alone', async () => {
    const { tenant, sourceId } = await addedSource();
    const before = (await stateOf(sourceId)).api_key_ciphertext;
    const result = await cli(['sources', 'reseal', '--tenant', tenant.id], {
      env: { FLOWMETER_ENCRYPTION_KEYS: `k3:${randomBytes(32).toString('base64')}` },
    });
    expect(result.code).toBe(EXIT.failed);
    expect(result.err).toMatch(
      new RegExp(`1 source key decrypts with none of FLOWMETER_ENCRYPTION_KEYS \\(${sourceId}\\)`),
    );
    expect((await stateOf(sourceId)).api_key_ciphertext).toBe(before);
  });

  it('reseal leaves a key replaced while it runs alone, and exits 1 until a run finds none', async () => {
    const { tenant, sourceId } = await addedSource();
    const newKeys = `k2:${randomBytes(32).toString('base64')},k1:${keyring.keys.get('k1')?.toString('base64')}`;
    const replaced = sealApiKey(parseKeyring(newKeys), tenant.id, 'replaced-meanwhile');
    // `sources set-key` holds the row between reseal's read and its write.
    await inTransaction(async (holder) => {
      await holder.query('select 1 from public.n8n_sources where id = $1 for update', [sourceId]);
      const run = cli(['sources', 'reseal', '--tenant', tenant.id, '--json'], {
        env: { FLOWMETER_ENCRYPTION_KEYS: newKeys },
      });
      await waitForLockWait({ queryLike: 'set_n8n_source_key' });
      await holder.query('update public.n8n_sources set api_key_ciphertext = $2 where id = $1', [
        sourceId,
        replaced,
      ]);
      await holder.query('commit');
      const result = await run;
      expect(result.code).toBe(EXIT.failed);
      expect(JSON.parse(result.out)).toMatchObject({ resealed: 0, changedMeanwhile: 1 });
    });
    expect((await stateOf(sourceId)).api_key_ciphertext).toBe(replaced);
    const again = await cli(['sources', 'reseal', '--tenant', tenant.id], {
      env: { FLOWMETER_ENCRYPTION_KEYS: newKeys },
    });
    expect(again.code).toBe(EXIT.ok);
  });

  it('a re-encryption never overwrites a key replaced since it was read', async () => {
    const { sourceId } = await addedSource();
    const before = (await stateOf(sourceId)).api_key_ciphertext;
    const { data, error, status } = await serviceClient().rpc('set_n8n_source_key', {
      source_id: sourceId,
      api_key_ciphertext: 'fm1.k9.stale',
      expected_ciphertext: 'fm1.k1.not-what-is-stored',
    });
    expect({ data, status, code: error?.code }).toEqual({ data: null, status: 409, code: 'PT409' });
    expect((await stateOf(sourceId)).api_key_ciphertext).toBe(before);
  });
});
