import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createPlan, createTenant } from '../support/fixtures.ts';
import { serviceClient, superuser, uniqueId } from '../support/stack.ts';

/**
 * The admin functions that turn a row on or off share private.set_enabled, and every
 * unknown id is answered by private.raise_not_found: each keeps its own message and hint.
 */
const unknownId = randomUUID();

async function newTenant() {
  return createTenant((await createPlan({ included_executions: 10 })).id);
}

const toggles = [
  {
    fn: 'set_alert_channel_enabled',
    unknown: { channel_id: 999_999_999, enabled: false },
    message: 'alert channel 999999999 not found',
    hint: 'flowmeter alerts channels list shows the ids',
    async add() {
      const tenant = await newTenant();
      const { data } = await serviceClient().rpc('add_alert_channel', {
        kind: 'email',
        target: `${uniqueId('ops')}@toggle.test`,
        tenant_id: tenant.id,
      });
      return { channel_id: data?.id };
    },
  },
  {
    fn: 'set_webhook_endpoint_enabled',
    unknown: { endpoint_id: unknownId, enabled: false },
    message: `webhook endpoint ${unknownId} not found`,
    hint: 'flowmeter webhooks list shows the ids',
    async add() {
      const id = randomUUID();
      await serviceClient().rpc('add_webhook_endpoint', {
        id,
        url: `https://${uniqueId('toggle')}.example.test/hooks`,
        event_types: ['webhook.test'],
        secret_ciphertext: 'fm1.k1.aXY.dGFn.Y2lwaGVy',
      });
      return { endpoint_id: id };
    },
  },
  {
    fn: 'set_n8n_source_enabled',
    unknown: { source_id: unknownId, enabled: false },
    message: `n8n source ${unknownId} not found`,
    hint: 'flowmeter sources list shows the ids',
    async add() {
      const tenant = await newTenant();
      const { data } = await serviceClient().rpc('add_n8n_source', {
        tenant_id: tenant.id,
        name: 'main',
        base_url: `https://${uniqueId('n8n')}.example.test`,
        api_key_ciphertext: 'fm1.k1.aXY.dGFn.Y2lwaGVy',
      });
      return { source_id: data?.id };
    },
  },
] as const;

describe('turning a row on or off', () => {
  for (const toggle of toggles) {
    it(`${toggle.fn}: an unknown id is 404 with its message and hint`, async () => {
      const { data, error } = await serviceClient().rpc(toggle.fn, toggle.unknown as never);
      expect(data).toBeNull();
      expect(error).toMatchObject({ code: 'PT404', message: toggle.message, hint: toggle.hint });
    });

    it(`${toggle.fn}: answers the row as it now is`, async () => {
      const key = await toggle.add();
      const off = await serviceClient().rpc(toggle.fn, { ...key, enabled: false } as never);
      expect(off.error).toBeNull();
      expect(off.data).toMatchObject({ id: Object.values(key)[0], enabled: false });
      const on = await serviceClient().rpc(toggle.fn, { ...key, enabled: true } as never);
      expect(on.data).toMatchObject({ id: Object.values(key)[0], enabled: true });
      await serviceClient().rpc(toggle.fn, { ...key, enabled: false } as never);
    });
  }

  it('set_n8n_source_key: an unknown source is 404 with the same message and hint', async () => {
    const { error } = await serviceClient().rpc('set_n8n_source_key', {
      source_id: unknownId,
      api_key_ciphertext: 'fm1.k1.aXY.dGFn.Y2lwaGVy',
    });
    expect(error).toMatchObject({
      code: 'PT404',
      message: `n8n source ${unknownId} not found`,
      hint: 'flowmeter sources list shows the ids',
    });
  });
});

describe('delivery outboxes', () => {
  it('alert and webhook deliveries take the same lease columns and claim indexes', async () => {
    const columns = async (table: string) =>
      (
        await superuser().query(
          `select column_name, data_type, is_nullable, column_default
           from information_schema.columns
           where table_schema = $1 and table_name = $2 and column_name in (
             select column_name from information_schema.columns
             where table_schema = 'private' and table_name = 'delivery_outbox')
           order by column_name`,
          table === 'delivery_outbox' ? ['private', table] : ['public', table],
        )
      ).rows;
    const outbox = await columns('delivery_outbox');
    expect(outbox.map((c) => c.column_name)).toEqual([
      'attempts',
      'created_at',
      'delivered_at',
      'last_attempt_at',
      'last_error',
      'lease_expires_at',
      'next_attempt_at',
      'status',
    ]);
    expect(await columns('alert_deliveries')).toEqual(outbox);
    expect(await columns('webhook_deliveries')).toEqual(outbox);

    const { rows: indexes } = await superuser().query(
      `select tablename, regexp_replace(indexdef, '^.* USING ', '') as definition
       from pg_indexes
       where schemaname = 'public' and tablename in ('alert_deliveries', 'webhook_deliveries')
         and indexdef like '% WHERE %'
       order by tablename, definition`,
    );
    expect(indexes).toEqual(
      ['alert_deliveries', 'webhook_deliveries'].flatMap((tablename) => [
        { tablename, definition: "btree (lease_expires_at) WHERE (status = 'sending'::text)" },
        {
          tablename,
          definition:
            "btree (next_attempt_at) WHERE (status = ANY (ARRAY['pending'::text, 'failed'::text]))",
        },
      ]),
    );
  });
});
