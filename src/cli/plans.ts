import { type Command, Option } from 'commander';
import { parser, repeatable, schemas, wholeNumber } from './arguments.ts';
import { CliError, type CommandContext, type Database, EXIT } from './context.ts';
import { addListCommand } from './list-command.ts';
import { count, printJson, renderRecord } from './output.ts';

type PlanRow = Awaited<ReturnType<typeof listPlans>>[number];

async function listPlans(database: Database, ids?: string[]) {
  return database.unwrap(await database.db.rpc('list_plans', ids ? { plan_ids: ids } : {}));
}

/** Minor units (cents) per execution above the quota. */
const price = (plan: PlanRow) =>
  plan.overage_unit_amount === null
    ? null
    : `${plan.overage_unit_amount} ${plan.currency} minor units`;

const recurringPrice = (plan: PlanRow) =>
  plan.recurring_amount === null ? null : `${plan.recurring_amount} ${plan.currency} minor units`;

function planRecord(plan: PlanRow) {
  return renderRecord([
    ['id', plan.id],
    ['name', plan.name],
    ['policy', plan.limit_policy],
    ['included', count(plan.included_executions)],
    ['overage price', price(plan)],
    ['recurring price', recurringPrice(plan)],
    ['currency', plan.currency],
    ['alert thresholds', plan.alert_thresholds.map((t) => `${t}%`).join(', ')],
    ['trial included', count(plan.trial_included_executions)],
    ['grace days', plan.grace_days],
    ['meter event name', plan.stripe_meter_event_name],
    ['meter id', plan.stripe_meter_id],
    ['stripe prices', plan.stripe_price_ids.join(', ')],
    ['tenants', plan.tenants],
  ]);
}

interface SetOptions {
  name?: string;
  included?: number;
  policy?: 'hard_limit' | 'overage' | 'unlimited';
  overagePrice?: number;
  recurringPrice?: number;
  currency?: string;
  thresholds?: number[];
  trialIncluded?: number;
  graceDays?: number;
  meterEventName?: string;
  meterId?: string;
  stripePrice?: string;
  json?: boolean;
}

export function registerPlans(plans: Command, ctx: CommandContext): void {
  const { io } = ctx;

  addListCommand<PlanRow, { plan?: string[] }>(plans, ctx, {
    description: 'every plan, with its Stripe prices and number of tenants',
    narrowWith: '--plan',
    options: (command) =>
      command.addOption(
        new Option('--plan <id>', 'only this plan (repeatable)').argParser(
          repeatable(schemas.planId),
        ),
      ),
    load: (database, _filter, options) => listPlans(database, options.plan),
    empty: (options) =>
      options.plan
        ? `No plan ${options.plan.join(', ')}: \`flowmeter plans list\` shows every plan.`
        : 'No plans yet: create one with `flowmeter plans set <id> --name … --included N`.',
    columns: ['id', 'name', 'policy', 'included', 'overage', 'alerts', 'trial', 'meter', 'tenants'],
    row: (p) => [
      p.id,
      p.name,
      p.limit_policy,
      count(p.included_executions),
      price(p),
      p.alert_thresholds.join(','),
      count(p.trial_included_executions),
      p.stripe_meter_event_name,
      p.tenants,
    ],
  });

  plans
    .command('set')
    .description(
      'create a plan, or change the given fields of an existing one (the others stay as they are)',
    )
    .argument('<id>', 'plan id, e.g. pro', parser(schemas.planId))
    .option('--name <name>', 'display name (required for a new plan)', parser(schemas.name))
    .option(
      '--included <n>',
      'executions included per billing period',
      parser(wholeNumber(0, Number.MAX_SAFE_INTEGER)),
    )
    .addOption(
      new Option('--policy <policy>', 'what happens at the quota (new plans: hard_limit)').choices([
        'hard_limit',
        'overage',
        'unlimited',
      ]),
    )
    .option(
      '--overage-price <minor units>',
      'price of one execution above the quota, in cents (decimals allowed)',
      parser(schemas.overagePrice),
    )
    .option(
      '--recurring-price <minor units>',
      'what the subscription charges per billing period, in cents (for the operator console’s recurring revenue)',
      parser(schemas.overagePrice),
    )
    .option('--currency <code>', 'ISO currency (new plans: usd)', parser(schemas.currency))
    .option(
      '--thresholds <list>',
      'alert thresholds, percent of the quota (new plans: 80,100)',
      parser(schemas.thresholds),
    )
    .option(
      '--trial-included <n>',
      'quota while the subscription is trialing',
      parser(wholeNumber(0, Number.MAX_SAFE_INTEGER)),
    )
    .option(
      '--grace-days <n>',
      'days a past-due subscription keeps running (new plans: 3)',
      parser(schemas.graceDays),
    )
    .option(
      '--meter-event-name <name>',
      'Stripe Billing Meter event name usage is reported under',
      parser(schemas.meterEventName),
    )
    .option('--meter-id <mtr_…>', 'Stripe meter id, for reconciliation', parser(schemas.meterId))
    .option(
      '--stripe-price <price_…>',
      'map this Stripe price to the plan (subscription sync)',
      parser(schemas.stripePrice),
    )
    .option('--json', 'print the plan as JSON on stdout')
    .action(async (id: string, options: SetOptions) => {
      const database = await ctx.openSupabase();
      database.unwrap(
        await database.db.rpc('set_plan', {
          id,
          ...defined({
            name: options.name,
            limit_policy: options.policy,
            included_executions: options.included,
            overage_unit_amount: options.overagePrice,
            recurring_amount: options.recurringPrice,
            currency: options.currency,
            alert_thresholds: options.thresholds,
            trial_included_executions: options.trialIncluded,
            grace_days: options.graceDays,
            stripe_meter_event_name: options.meterEventName,
            stripe_meter_id: options.meterId,
            stripe_price_id: options.stripePrice,
          }),
        }),
        { flags: SET_PLAN_FLAGS },
      );
      const [plan] = await listPlans(database, [id]);
      if (!plan) throw new CliError(EXIT.failed, `plan ${id} was saved but cannot be read back`);
      if (options.json) return printJson(io, plan);
      io.out(planRecord(plan));
    });
}

/** set_plan's arguments as `plans set` spells them. */
const SET_PLAN_FLAGS: Record<string, string> = {
  limit_policy: '--policy',
  included_executions: '--included',
  overage_unit_amount: '--overage-price',
  recurring_amount: '--recurring-price',
  alert_thresholds: '--thresholds',
  trial_included_executions: '--trial-included',
  grace_days: '--grace-days',
  stripe_meter_event_name: '--meter-event-name',
  stripe_meter_id: '--meter-id',
  stripe_price_id: '--stripe-price',
};

/** Leaves out what the operator did not give, so the SQL function keeps the current value. */
function defined<T extends object>(values: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(values).filter(([, v]) => v !== undefined),
  ) as Partial<T>;
}
