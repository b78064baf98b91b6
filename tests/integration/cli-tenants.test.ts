import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { cli } from '../support/cli.ts';
import { createPlan } from '../support/fixtures.ts';
import { serviceClient, superuser, uniqueId } from '../support/stack.ts';

const customer = () => `cus_${randomBytes(6).toString('hex')}`;

async function tenantsNamed(name: string) {
  const { rows } = await superuser().query('select * from public.tenants where name = $1', [name]);
  return rows;
}

/** `flowmeter tenants add <name> --plan <planId>` with further flags. */
const tenantsAdd = (name: string, planId: string, ...flags: string[]) =>
  cli(['tenants', 'add', name, '--plan', planId, ...flags]);

async function addTenant(planId: string, extra: string[] = []) {
  const name = uniqueId('Tenant');
  const ref = uniqueId('ref');
  const result = await tenantsAdd(name, planId, '--external-ref', ref, ...extra, '--json');
  expect(result.code).toBe(EXIT.ok);
  return { ...(JSON.parse(result.out) as { id: string; name: string }), ref };
}

describe('flowmeter tenants add', () => {
  it('creates the tenant on its plan, linked to its Stripe customer', async () => {
    const plan = await createPlan();
    const cus = customer();
    const name = uniqueId('Acme');
    const result = await tenantsAdd(
      name,
      plan.id,
      '--external-ref',
      `${name}-ref`,
      '--stripe-customer',
      cus,
    );
    expect(result.code).toBe(EXIT.ok);
    expect(result.out).toMatch(new RegExp(`│ stripe customer │ ${cus}`));
    expect(result.err).toMatch(/Next: `flowmeter sources add --tenant .*-ref/);
    expect(await tenantsNamed(name)).toMatchObject([
      { plan_id: plan.id, external_ref: `${name}-ref`, stripe_customer_id: cus },
    ]);
  });

  it('refuses an unknown plan, saying how to list plans, and creates nothing', async () => {
    const name = uniqueId('Nope');
    const result = await cli(['tenants', 'add', name, '--plan', 'no-such-plan']);
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(/no plan has the id 'no-such-plan': `flowmeter plans list`/);
    expect(await tenantsNamed(name)).toEqual([]);
  });

  it('refuses an external reference the enforce endpoint would refuse, and creates nothing', async () => {
    const plan = await createPlan();
    const name = uniqueId('Hidden');
    const result = await tenantsAdd(name, plan.id, '--external-ref', 'acme\u200bco');
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(/--external-ref.*found U\+200B at position 4/s);
    expect(await tenantsNamed(name)).toEqual([]);
  });

  it('refuses a name with a control character, naming it, and creates nothing: it would reach every table the CLI prints', async () => {
    const plan = await createPlan();
    const stem = uniqueId('Esc');
    for (const [name, found] of [
      [`${stem}\u001b[2J\u001b[31mred`, 'U+001B'],
      [`${stem}\nbreak`, 'U+000A'],
      [`${stem}\u0000nul`, 'U+0000'],
    ] as const) {
      const result = await tenantsAdd(name, plan.id);
      expect(result.code).toBe(EXIT.usage);
      expect(result.err).toContain(`argument 'name'`);
      expect(result.err).toContain(`found ${found} at position ${stem.length}`);
      // Quoted back with its control characters shown, not acting on the terminal.
      expect(result.err.includes('\u001b')).toBe(false);
      expect(result.err).not.toMatch(/unsupported Unicode escape sequence/);
    }
    const { rows } = await superuser().query('select 1 from public.tenants where name like $1', [
      `${stem}%`,
    ]);
    expect(rows).toEqual([]);
  });

  it('refuses an external reference or Stripe customer another tenant has', async () => {
    const plan = await createPlan();
    const cus = customer();
    const first = await addTenant(plan.id, ['--stripe-customer', cus]);
    const name = uniqueId('Copy');

    const sameRef = await tenantsAdd(name, plan.id, '--external-ref', first.ref);
    expect(sameRef.code).toBe(EXIT.usage);
    expect(sameRef.err).toMatch(`tenant ${first.id} already has the external reference`);

    const sameCustomer = await tenantsAdd(name, plan.id, '--stripe-customer', cus);
    expect(sameCustomer.code).toBe(EXIT.usage);
    expect(sameCustomer.err).toMatch(
      `Stripe customer ${cus} is already linked to tenant ${first.id}`,
    );
    expect(await tenantsNamed(name)).toEqual([]);
  });

  it('refuses an external reference that is another tenant’s id, which enforcement would read as that tenant', async () => {
    const plan = await createPlan();
    const first = await addTenant(plan.id);
    const name = uniqueId('Shadow');
    const result = await tenantsAdd(name, plan.id, '--external-ref', first.id.toUpperCase());
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(`is the id of tenant ${first.id}`);
    expect(await tenantsNamed(name)).toEqual([]);
  });

  it.each([
    [['--plan', 'pro', '--stripe-customer', 'acme'], /Stripe customer id \(cus_…\)/],
    [['--plan', 'Pro!'], /a plan id/],
    [[], /required option '--plan <id>' not specified/],
  ])('exits 2 for %j, creating nothing', async (args, message) => {
    const name = uniqueId('Bad');
    const result = await cli(['tenants', 'add', name, ...args]);
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(message);
    expect(await tenantsNamed(name)).toEqual([]);
  });
});

describe('flowmeter tenants list and usage', () => {
  it("lists tenants with this period's usage", async () => {
    const plan = await createPlan({ included_executions: 2000 });
    const tenant = await addTenant(plan.id);
    // Other test files add tenants to the same database: past the first 1,000 (as many as
    // one call hands over) the whole list would not show this one, so it is asked for.
    const table = await cli(['tenants', 'list', '--tenant', tenant.ref]);
    expect(table.code).toBe(EXIT.ok);
    expect(table.out).toMatch(
      new RegExp(`│ ${tenant.id} │ ${tenant.name}\\s+│ ${tenant.ref}.*│ 0 / 2,000\\s+│ 0%`),
    );
    const json = JSON.parse((await cli(['tenants', 'list', '--tenant', tenant.id, '--json'])).out);
    expect(json).toEqual([expect.objectContaining({ id: tenant.id, quota: 2000, committed: 0 })]);
    const unknown = await cli(['tenants', 'list', '--tenant', 'no-such-tenant-ref']);
    expect(unknown.code).toBe(EXIT.usage);
  });

  it('shows committed (collected + reserved), quota, percent, level and what was reported', async () => {
    const plan = await createPlan({ included_executions: 100 });
    const tenant = await addTenant(plan.id);
    await superuser().query(
      `insert into public.usage_counters (tenant_id, period_start, period_end, executions, billable, billable_success, reported)
       select $1, p.period_start, p.period_end, 90, 79, 79, 60 from private.billing_period(null, null, now()) p`,
      [tenant.id],
    );
    // One run allowed by enforcement and not collected yet: a reservation.
    const { error } = await serviceClient().rpc('enforce_usage', { tenant: tenant.id });
    expect(error).toBeNull();

    const result = await cli(['tenants', 'usage', tenant.ref, '--json']);
    expect(result.code).toBe(EXIT.ok);
    expect(JSON.parse(result.out)).toMatchObject({
      id: tenant.id,
      billable: 79,
      reserved: 1,
      committed: 80,
      quota: 100,
      remaining: 20,
      percent: 80,
      level: 'warning',
      reported: 60,
    });
    const table = await cli(['tenants', 'usage', tenant.id]);
    expect(table.out).toMatch(/│ committed \/ quota\s+│ 80 \/ 100/);
    expect(table.out).toMatch(/│ level\s+│ warning/);
  });

  it('says how to list tenants when the tenant is unknown', async () => {
    const result = await cli(['tenants', 'usage', 'no-such-tenant']);
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(
      /no tenant has the id or external reference "no-such-tenant": `flowmeter tenants list`/,
    );
  });

  it('exits 3 when the database cannot be reached', async () => {
    const result = await cli(['tenants', 'list'], { SUPABASE_URL: 'http://127.0.0.1:9' });
    expect(result.code).toBe(EXIT.unavailable);
  });
});
