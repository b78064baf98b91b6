import type { Command } from 'commander';
import { parser, schemas } from './arguments.ts';
import {
  type CommandContext,
  listTenants,
  loadEnvironment,
  loadSupabaseConfig,
  openDatabase,
  resolveTenant,
  type TenantRow,
} from './context.ts';
import { count, printJson, renderRecord, renderTable, time } from './output.ts';

const committedOfQuota = (t: TenantRow) =>
  t.quota === null
    ? `${count(t.committed)} (unlimited)`
    : `${count(t.committed)} / ${count(t.quota)}`;

const percent = (t: TenantRow) => (t.percent === null ? '–' : `${t.percent}%`);

/** The current period's usage as enforcement counts it: committed = collected + reserved. */
function usageRecord(t: TenantRow) {
  return renderRecord([
    ['tenant', `${t.name} (${t.id})`],
    ['external ref', t.external_ref],
    ['plan', `${t.plan_name} (${t.plan_id}, ${t.limit_policy})`],
    ['subscription', t.subscription_status],
    ['stripe customer', t.stripe_customer_id],
    ['period', `${time(t.period_start)} → ${time(t.period_end)}`],
    ['committed / quota', committedOfQuota(t)],
    ['percent', percent(t)],
    ['level', t.level],
    ['remaining', count(t.remaining)],
    ['collected (billable)', count(t.billable)],
    ['reserved', count(t.reserved)],
    ['reported to Stripe', count(t.reported)],
  ]);
}

export function registerTenants(program: Command, ctx: CommandContext): void {
  const { io } = ctx;
  const tenants = program.command('tenants').description('customers: plan, Stripe link, usage');

  tenants
    .command('add')
    .description('create a tenant on a plan')
    .argument('<name>', 'display name', parser(schemas.name))
    .requiredOption('--plan <id>', 'its plan (see `flowmeter plans list`)', parser(schemas.planId))
    .option(
      '--external-ref <ref>',
      "your product's id for this customer; the enforce endpoint accepts it too",
      parser(schemas.externalRef),
    )
    .option(
      '--stripe-customer <cus_…>',
      'its Stripe customer, so usage can be reported before the first subscription event',
      parser(schemas.stripeCustomer),
    )
    .option('--json', 'print the tenant as JSON on stdout')
    .action(
      async (
        name: string,
        options: { plan: string; externalRef?: string; stripeCustomer?: string; json?: boolean },
      ) => {
        const database = openDatabase(await loadEnvironment(io, loadSupabaseConfig));
        const tenant = database.unwrap(
          await database.db.rpc('add_tenant', {
            name,
            plan_id: options.plan,
            ...(options.externalRef ? { external_ref: options.externalRef } : {}),
            ...(options.stripeCustomer ? { stripe_customer_id: options.stripeCustomer } : {}),
          }),
          {
            notFound: '`flowmeter plans list` shows the plans',
            conflict: '`flowmeter tenants list` shows the tenants',
          },
        );
        if (options.json) return printJson(io, tenant);
        io.out(
          renderRecord([
            ['id', tenant.id],
            ['name', tenant.name],
            ['external ref', tenant.external_ref],
            ['plan', tenant.plan_id],
            ['stripe customer', tenant.stripe_customer_id],
          ]),
        );
        io.err(
          `Next: \`flowmeter sources add --tenant ${tenant.external_ref ?? tenant.id} --url <n8n URL> --api-key -\``,
        );
      },
    );

  tenants
    .command('list')
    .description("every tenant, with its plan and this period's usage")
    .option('--json', 'print JSON on stdout')
    .action(async (options: { json?: boolean }) => {
      const database = openDatabase(await loadEnvironment(io, loadSupabaseConfig));
      const rows = await listTenants(database);
      if (options.json) return printJson(io, rows);
      if (rows.length === 0) {
        io.out('No tenants yet: add one with `flowmeter tenants add <name> --plan <id>`.');
        return;
      }
      io.out(
        renderTable(
          [
            'id',
            'name',
            'external ref',
            'plan',
            'subscription',
            'sources',
            'committed / quota',
            '%',
          ],
          rows.map((t) => [
            t.id,
            t.name,
            t.external_ref,
            t.plan_id,
            t.subscription_status,
            t.sources,
            committedOfQuota(t),
            percent(t),
          ]),
        ),
      );
    });

  tenants
    .command('usage')
    .description("a tenant's usage in its current billing period")
    .argument('<tenant>', 'tenant id or external reference', parser(schemas.tenant))
    .option('--json', 'print JSON on stdout')
    .action(async (ref: string, options: { json?: boolean }) => {
      const database = openDatabase(await loadEnvironment(io, loadSupabaseConfig));
      const tenant = await resolveTenant(database, ref);
      if (options.json) return printJson(io, tenant);
      io.out(usageRecord(tenant));
    });
}
