import { randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseKeyring } from '../../src/crypto/keyring.ts';
import { openApiKey, sealApiKey } from '../../src/n8n/api-key.ts';
import { addSource } from '../../src/sources/add-source.ts';
import { resealSourceKeys } from '../../src/sources/reseal-source-keys.ts';
import { setSourceKey } from '../../src/sources/set-source-key.ts';
import { testSource } from '../../src/sources/test-source.ts';
import { createSource, keyring, useN8nServer } from '../support/collector.ts';
import { FakeN8n } from '../support/fake-n8n.ts';
import { createTenant } from '../support/fixtures.ts';
import { serviceClient, superuser, uniqueId } from '../support/stack.ts';

const server = useN8nServer();
const timeoutMs = 2000;

/** An n8n instance that accepts `apiKey`, not yet a source. */
function n8nInstance() {
  const apiKey = `n8n_api_${randomBytes(8).toString('hex')}`;
  const baseUrl = `https://${uniqueId('n8n')}.n8n.test`;
  const fake = new FakeN8n({ baseUrl, apiKey });
  server.use(...fake.handlers());
  return { apiKey, baseUrl, fake };
}

const storedKeyOf = async (sourceId: string) =>
  (
    await superuser().query<{ api_key_ciphertext: string }>(
      'select api_key_ciphertext from public.n8n_sources where id = $1',
      [sourceId],
    )
  ).rows[0]?.api_key_ciphertext;

/** The tenant's registered sources, one row each (an add that failed leaves none). */
const sourcesOf = async (tenantId: string) =>
  (await superuser().query('select 1 from public.n8n_sources where tenant_id = $1', [tenantId]))
    .rows;

describe('source operations, called directly', () => {
  it('adds a source n8n accepts, its key sealed to the tenant; a second add is a conflict', async () => {
    const tenant = await createTenant();
    const { apiKey, baseUrl, fake } = n8nInstance();
    fake.addMany(2);
    const input = { db: serviceClient(), keyring, timeoutMs, tenantId: tenant.id, baseUrl, apiKey };
    const added = await addSource({ ...input, test: true });
    expect(added).toMatchObject({
      ok: true,
      value: { source: { tenant_id: tenant.id, base_url: baseUrl }, latestExecution: { id: '2' } },
    });
    if (!added.ok) return;
    expect(added.value.source).not.toHaveProperty('api_key_ciphertext');
    const sealed = await storedKeyOf(added.value.source.id);
    expect(openApiKey(keyring, tenant.id, sealed as string)).toBe(apiKey);
    expect(await addSource({ ...input, test: false })).toMatchObject({
      ok: false,
      error: { code: 'conflict' },
    });
  });

  it('refuses a URL carrying a user name or password, without repeating it, storing nothing', async () => {
    const tenant = await createTenant();
    const { baseUrl, apiKey } = n8nInstance();
    const added = await addSource({
      db: serviceClient(),
      keyring,
      timeoutMs,
      tenantId: tenant.id,
      baseUrl: baseUrl.replace('://', '://admin:hunter22@'),
      apiKey,
      test: false,
    });
    expect(added).toMatchObject({
      ok: false,
      error: { code: 'invalid_request', message: expect.stringMatching(/user name or password/) },
    });
    expect(JSON.stringify(added)).not.toContain('hunter22');
    expect(await sourcesOf(tenant.id)).toEqual([]);
  });

  it('stores nothing when n8n refuses the key, and says what to change', async () => {
    const tenant = await createTenant();
    const { baseUrl } = n8nInstance();
    const added = await addSource({
      db: serviceClient(),
      keyring,
      timeoutMs,
      tenantId: tenant.id,
      baseUrl,
      apiKey: 'wrong',
      test: true,
    });
    expect(added).toMatchObject({
      ok: false,
      error: {
        code: 'upstream_failed',
        message: expect.stringMatching(/rejected the API key \(401\).*Nothing was stored\.$/),
      },
    });
    expect(await sourcesOf(tenant.id)).toEqual([]);
  });

  it("tests a source with its stored key; n8n's refusal is the value, an undecryptable key a failure", async () => {
    const source = await createSource(server);
    const input = { db: serviceClient(), timeoutMs, sourceId: source.sourceId };
    expect(await testSource({ ...input, keyring })).toMatchObject({
      ok: true,
      value: { source: { id: source.sourceId }, probe: { ok: true } },
    });
    const otherKeys = parseKeyring(`k9:${randomBytes(32).toString('base64')}`);
    expect(await testSource({ ...input, keyring: otherKeys })).toMatchObject({
      ok: false,
      error: { code: 'internal', message: expect.stringContaining('cannot decrypt') },
    });
    expect(await testSource({ ...input, keyring, sourceId: randomUUID() })).toMatchObject({
      ok: false,
      error: { code: 'not_found', message: expect.stringContaining('no source has the id') },
    });
  });

  it('replaces a key only when n8n accepts the new one', async () => {
    const source = await createSource(server);
    const before = await storedKeyOf(source.sourceId);
    const input = { db: serviceClient(), keyring, timeoutMs, sourceId: source.sourceId };
    expect(await setSourceKey({ ...input, apiKey: 'revoked', test: true })).toMatchObject({
      ok: false,
      error: { code: 'upstream_failed', message: expect.stringContaining('not changed') },
    });
    expect(await storedKeyOf(source.sourceId)).toBe(before);
    expect(await setSourceKey({ ...input, apiKey: 'new-key', test: false })).toMatchObject({
      ok: true,
      value: { source: { id: source.sourceId }, latestExecution: null },
    });
    expect(
      openApiKey(keyring, source.tenantId, (await storedKeyOf(source.sourceId)) as string),
    ).toBe('new-key');
  });

  it('reseals every key of the tenants asked for under the active key, and counts what it did', async () => {
    const first = await createSource(server);
    const second = await createSource(server, { tenantId: first.tenantId, planId: first.planId });
    const stale = sealApiKey(
      parseKeyring(`k7:${randomBytes(32).toString('base64')}`),
      first.tenantId,
      'x',
    );
    await superuser().query('update public.n8n_sources set api_key_ciphertext = $2 where id = $1', [
      second.sourceId,
      stale,
    ]);
    const newKeys = parseKeyring(
      `k2:${randomBytes(32).toString('base64')},k1:${keyring.keys.get('k1')?.toString('base64')}`,
    );
    const events: string[] = [];
    const resealed = await resealSourceKeys({
      db: serviceClient(),
      keyring: newKeys,
      tenantIds: [first.tenantId],
      onProgress: (event) => events.push(event.type),
    });
    expect(resealed).toEqual({
      ok: true,
      value: {
        key: 'k2',
        sources: 2,
        resealed: 1,
        changedMeanwhile: 0,
        undecryptable: [second.sourceId],
      },
    });
    expect(events).toEqual(['due', 'done', 'done']);
    expect(await storedKeyOf(first.sourceId)).toMatch(/^fm1\.k2\./);
    expect(await storedKeyOf(second.sourceId)).toBe(stale);
  });
});
