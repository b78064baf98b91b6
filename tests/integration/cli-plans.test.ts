import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { cli } from '../support/cli.ts';
import { stack, superuser, uniqueId } from '../support/stack.ts';

async function planRow(id: string) {
  const { rows } = await superuser().query(
    `select p.*, p.included_executions::int as included, p.overage_unit_amount::float as overage,
            p.recurring_amount::float as recurring,
            array(select stripe_price_id from public.plan_prices pp where pp.plan_id = p.id) as prices
     from public.plans p where p.id = $1`,
    [id],
  );
  return rows[0];
}

const planId = () => uniqueId('plan');

describe('flowmeter plans set', () => {
  it('creates a plan with every setting and maps its Stripe price', async () => {
    const id = planId();
    const price = `price_${id.replace(/-/g, '_')}`;
    const result = await cli([
      'plans',
      'set',
      id,
      '--name',
      'Pro',
      '--included',
      '10000',
      '--policy',
      'overage',
      '--overage-price',
      '0.25',
      '--recurring-price',
      '4900',
      '--currency',
      'EUR',
      '--thresholds',
      '100,80,95',
      '--trial-included',
      '500',
      '--grace-days',
      '7',
      '--meter-event-name',
      'n8n_executions',
      '--meter-id',
      'mtr_test123',
      '--stripe-price',
      price,
      '--json',
    ]);
    expect(result.code).toBe(EXIT.ok);
    expect(JSON.parse(result.out)).toMatchObject({
      id,
      name: 'Pro',
      limit_policy: 'overage',
      included_executions: 10000,
      currency: 'eur',
      alert_thresholds: [80, 95, 100],
      trial_included_executions: 500,
      grace_days: 7,
      stripe_meter_event_name: 'n8n_executions',
      stripe_meter_id: 'mtr_test123',
      stripe_price_ids: [price],
      tenants: 0,
      recurring_amount: 4900,
    });
    expect(await planRow(id)).toMatchObject({
      included: 10000,
      overage: 0.25,
      recurring: 4900,
      prices: [price],
    });
  });

  it('changes only the fields given, keeping the rest', async () => {
    const id = planId();
    await cli(['plans', 'set', id, '--name', 'Starter', '--included', '500', '--thresholds', '50']);
    const result = await cli(['plans', 'set', id, '--name', 'Starter 2026', '--grace-days', '0']);
    expect(result.code).toBe(EXIT.ok);
    expect(result.out).toMatch(/Starter 2026/);
    expect(await planRow(id)).toMatchObject({
      name: 'Starter 2026',
      included: 500,
      alert_thresholds: [50],
      grace_days: 0,
      limit_policy: 'hard_limit',
    });
  });

  it('an unlimited plan drops its quota; a quota given with it is refused', async () => {
    const id = planId();
    await cli(['plans', 'set', id, '--name', 'Big', '--included', '5']);
    expect((await cli(['plans', 'set', id, '--policy', 'unlimited'])).code).toBe(EXIT.ok);
    expect((await planRow(id)).included).toBeNull();

    const refused = await cli(['plans', 'set', id, '--policy', 'unlimited', '--included', '9']);
    expect(refused.code).toBe(EXIT.usage);
    expect(refused.err).toMatch(/an unlimited plan has no quota/);
  });

  it('refuses an overage plan without a price and a new plan without a name, creating nothing', async () => {
    const id = planId();
    const noPrice = await cli([
      'plans',
      'set',
      id,
      '--name',
      'X',
      '--included',
      '5',
      '--policy',
      'overage',
    ]);
    expect(noPrice.code).toBe(EXIT.usage);
    expect(noPrice.err).toMatch(/overage plan needs --overage-price/);
    expect(noPrice.err).not.toMatch(/overage_unit_amount/);
    const noName = await cli(['plans', 'set', id, '--included', '5']);
    expect(noName.code).toBe(EXIT.usage);
    expect(noName.err).toMatch(/needs a name/);
    expect(await planRow(id)).toBeUndefined();
  });

  it.each([
    [['--included', 'lots'], /--included <n>.*must be a whole number/],
    [['--included', '1.5'], /must be a whole number/],
    [['--policy', 'free'], /Allowed choices are hard_limit, overage, unlimited/],
    [['--thresholds', '80,0'], /must be a whole number from 1 to 1000/],
    [['--currency', 'dollars'], /three-letter ISO currency code/],
    [['--overage-price', '-1'], /minor unit/],
    [['--meter-id', 'meter_1'], /Stripe meter id \(mtr_…\)/],
    [['--stripe-price', 'prod_1'], /Stripe price id \(price_…\)/],
    [['--grace-days', '91'], /from 0 to 90/],
  ])('exits 2 for %j, changing nothing', async (args, message) => {
    const id = planId();
    const result = await cli(['plans', 'set', id, '--name', 'X', '--included', '5', ...args]);
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(message);
    expect(await planRow(id)).toBeUndefined();
  });

  it('exits 2 for a malformed plan id', async () => {
    const result = await cli(['plans', 'set', 'Pro Plan', '--name', 'X', '--included', '5']);
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(/a plan id: lowercase letters/);
  });
});

describe('flowmeter plans list', () => {
  it('shows the plans as a table, and as JSON for scripts', async () => {
    const id = planId();
    await cli(['plans', 'set', id, '--name', 'Listed', '--included', '1234']);
    // Other test files add plans to the same database: past the first 1,000 (as many as one
    // call hands over) the whole list would not show this one, so it is asked for by id.
    const table = await cli(['plans', 'list', '--plan', id]);
    expect(table.code).toBe(EXIT.ok);
    expect(table.out).toMatch(new RegExp(`│ ${id}\\s+│ Listed\\s+│ hard_limit\\s+│ 1,234`));
    const json = await cli(['plans', 'list', '--plan', id, '--json']);
    expect(JSON.parse(json.out)).toContainEqual(
      expect.objectContaining({ id, included_executions: 1234, stripe_price_ids: [] }),
    );
  });

  it('lists only the plans --plan names, and says when none of them exists', async () => {
    const [a, b, missing] = [planId(), planId(), planId()];
    await cli(['plans', 'set', a, '--name', 'A', '--included', '1']);
    await cli(['plans', 'set', b, '--name', 'B', '--included', '2']);
    const json = await cli(['plans', 'list', '--plan', a, '--plan', missing, '--json']);
    expect(JSON.parse(json.out).map((p: { id: string }) => p.id)).toEqual([a]);
    const none = await cli(['plans', 'list', '--plan', missing]);
    expect(none.code).toBe(EXIT.ok);
    expect(none.out).toContain(`No plan ${missing}: \`flowmeter plans list\` shows every plan.`);
    const malformed = await cli(['plans', 'list', '--plan', 'Pro Plan']);
    expect(malformed.code).toBe(EXIT.usage);
    expect(malformed.err).toMatch(/--plan.*a plan id: lowercase letters/);
  });

  it('exits 3 when the database cannot be reached', async () => {
    const result = await cli(['plans', 'list'], { SUPABASE_URL: 'http://127.0.0.1:9' });
    expect(result.code).toBe(EXIT.unavailable);
    expect(result.err).toMatch(/could not reach the database at http:\/\/127\.0\.0\.1:9/);
  });

  it('exits 2 naming the missing variable and .env.example', async () => {
    const result = await cli(['plans', 'list'], { SUPABASE_SERVICE_ROLE_KEY: undefined });
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(/SUPABASE_SERVICE_ROLE_KEY is required/);
    expect(result.err).toMatch(/\.env\.example/);
  });

  it('exits 2 when the key is refused', async () => {
    const result = await cli(['plans', 'list'], { SUPABASE_SERVICE_ROLE_KEY: stack.anonKey });
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(/SUPABASE_SERVICE_ROLE_KEY must be the project's service_role key/);
  });
});
