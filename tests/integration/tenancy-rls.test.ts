import { beforeAll, describe, expect, it } from 'vitest';
import { addMember, createPlan, createTenant, createUser } from '../support/fixtures.ts';
import { anonClient, asRole, serviceClient, superuser, uniqueId } from '../support/stack.ts';

/**
 * Row-level security on the tenancy tables, checked as PostgREST runs requests: in a
 * transaction, as the JWT's role, with its claims set.
 */
const TABLES = ['plans', 'tenants', 'tenant_members', 'n8n_sources'] as const;

interface World {
  tenantA: { id: string; plan_id: string };
  tenantB: { id: string; plan_id: string };
  memberOfA: string;
  memberOfBoth: string;
  outsider: string;
}

let world: World;

async function addSource(tenantId: string) {
  const { error } = await serviceClient().rpc('add_n8n_source', {
    tenant_id: tenantId,
    name: 'main',
    base_url: `https://${uniqueId('n8n')}.example.test`,
    api_key_ciphertext: 'fm1.k1.aXY.dGFn.Y2lwaGVy',
  });
  if (error) throw new Error(error.message);
}

beforeAll(async () => {
  const [tenantA, tenantB] = await Promise.all([createTenant(), createTenant()]);
  const [memberOfA, memberOfBoth, outsider] = await Promise.all([
    createUser(),
    createUser(),
    createUser(),
  ]);
  await addMember(tenantA.id, memberOfA, 'owner');
  await addMember(tenantA.id, memberOfBoth);
  await addMember(tenantB.id, memberOfBoth, 'admin');
  await Promise.all([addSource(tenantA.id), addSource(tenantB.id)]);
  world = { tenantA, tenantB, memberOfA, memberOfBoth, outsider };
});

const asUser = <T>(userId: string, fn: Parameters<typeof asRole<T>>[2]) =>
  asRole('authenticated', { sub: userId }, fn);

const tenantIdsOf = (table: string, rows: Array<Record<string, unknown>>) =>
  rows.map((r) => (table === 'tenants' ? r.id : r.tenant_id));

describe('a member of tenant A', () => {
  it("reads A's tenant, membership and sources, and none of B's", async () => {
    await asUser(world.memberOfA, async (db) => {
      for (const table of ['tenants', 'tenant_members', 'n8n_sources']) {
        const columns = table === 'n8n_sources' ? 'id, tenant_id' : '*';
        const { rows } = await db.query(`select ${columns} from public.${table}`);
        expect(rows.length, table).toBeGreaterThan(0);
        expect(new Set(tenantIdsOf(table, rows)), table).toEqual(new Set([world.tenantA.id]));
      }
    });
  });

  it("reads A's plan and no other plan", async () => {
    await createPlan(); // another plan nobody of A is on
    await asUser(world.memberOfA, async (db) => {
      const { rows } = await db.query('select id from public.plans');
      expect(rows.map((r) => r.id)).toEqual([world.tenantA.plan_id]);
    });
  });

  it('sees only their own membership rows, not co-members', async () => {
    await asUser(world.memberOfA, async (db) => {
      const { rows } = await db.query('select user_id from public.tenant_members');
      expect(rows.map((r) => r.user_id)).toEqual([world.memberOfA]);
    });
  });

  it('cannot read the encrypted API key of their own sources', async () => {
    await asUser(world.memberOfA, async (db) => {
      await expect(
        db.query('select api_key_ciphertext from public.n8n_sources'),
      ).rejects.toMatchObject({
        code: '42501',
      });
    });
  });
});

describe('a member of two tenants', () => {
  it('sees both tenants, each with its own sources', async () => {
    await asUser(world.memberOfBoth, async (db) => {
      const tenants = await db.query('select id from public.tenants order by id');
      expect(new Set(tenants.rows.map((r) => r.id))).toEqual(
        new Set([world.tenantA.id, world.tenantB.id]),
      );
      const sources = await db.query('select tenant_id from public.n8n_sources');
      expect(new Set(sources.rows.map((r) => r.tenant_id))).toEqual(
        new Set([world.tenantA.id, world.tenantB.id]),
      );
    });
  });
});

describe('a signed-in user of no tenant', () => {
  it('reads no row of any table', async () => {
    await asUser(world.outsider, async (db) => {
      for (const table of TABLES) {
        const columns = table === 'n8n_sources' ? 'id' : '*';
        const { rows } = await db.query(`select ${columns} from public.${table}`);
        expect(rows, table).toEqual([]);
      }
    });
  });
});

describe('anon', () => {
  it.each(TABLES)('cannot read %s at all', async (table) => {
    await asRole('anon', {}, async (db) => {
      await expect(db.query(`select 1 from public.${table}`)).rejects.toMatchObject({
        code: '42501',
      });
    });
  });
});

describe('writes', () => {
  const attempts = (table: string, tenantId: string): string[] => [
    `insert into public.${table} default values`,
    `update public.${table} set created_at = now() where true`,
    `delete from public.${table} where true`,
    `truncate public.${table} cascade`,
    ...(table === 'tenants'
      ? [`update public.tenants set plan_id = plan_id where id = '${tenantId}'`]
      : []),
  ];

  it.each(TABLES)('an authenticated member cannot write %s', async (table) => {
    for (const statement of attempts(table, world.tenantA.id)) {
      await asUser(world.memberOfA, async (db) => {
        await expect(db.query(statement), statement).rejects.toMatchObject({ code: '42501' });
      });
    }
  });

  it.each(TABLES)('anon cannot write %s', async (table) => {
    for (const statement of attempts(table, world.tenantA.id)) {
      await asRole('anon', {}, async (db) => {
        await expect(db.query(statement), statement).rejects.toMatchObject({ code: '42501' });
      });
    }
  });

  it('nothing changed after all the refused writes', async () => {
    const { rows } = await superuser().query(
      'select count(*)::int as n from public.tenant_members where tenant_id = $1',
      [world.tenantA.id],
    );
    expect(rows[0].n).toBe(2);
  });

  it('the service role writes through the admin functions and updated_at follows', async () => {
    const { data: before } = await serviceClient().rpc('set_plan', {
      id: world.tenantA.plan_id,
      name: 'Renamed',
      included_executions: 5,
    });
    expect(before?.name).toBe('Renamed');
    const { rows } = await superuser().query(
      'select updated_at > created_at as touched from public.plans where id = $1',
      [world.tenantA.plan_id],
    );
    expect(rows[0].touched).toBe(true);
  });
});

describe('through the API with the anon key', () => {
  it("a service-only function answers 401 with PostgREST's error body and changes nothing", async () => {
    const name = uniqueId('evil');
    const { data, error, status } = await anonClient().rpc('add_tenant', {
      name,
      plan_id: world.tenantA.plan_id,
    });
    expect(status).toBe(401);
    expect(data).toBeNull();
    expect(error).toMatchObject({
      code: '42501',
      message: 'permission denied for function add_tenant',
    });
    const { rows } = await superuser().query('select 1 from public.tenants where name = $1', [
      name,
    ]);
    expect(rows).toEqual([]);
  });
});
