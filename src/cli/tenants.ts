import type { Command } from 'commander';
import {
  type CurrentInvoicePreview,
  currentInvoicePreview,
} from '../billing/current-invoice-preview.ts';
import { stripeClientFrom } from '../billing/from-config.ts';
import { loadInvoicePreviewConfig } from '../config/reporter-env.ts';
import { plural } from '../domain/words.ts';
import { parser, schemas } from './arguments.ts';
import { type CommandContext, listTenants, type TenantRow } from './context.ts';
import { addListCommand } from './list-command.ts';
import { cliLogger, count, money, printJson, renderRecord, time } from './output.ts';

const committedOfQuota = (t: TenantRow) =>
  t.quota === null
    ? `${count(t.committed)} (unlimited)`
    : `${count(t.committed)} / ${count(t.quota)}`;

const percent = (t: TenantRow) => (t.percent === null ? '–' : `${t.percent}%`);

/** Stripe's upcoming invoice as the cache holds it, or why there is none. */
function invoiceText(t: TenantRow, invoice: CurrentInvoicePreview, stripeKey: boolean) {
  const p = invoice.preview;
  if (p?.status === 'ok') {
    return `${money(p.total, p.currency)} total; usage: ${plural(p.usage_quantity, 'execution')} for ${money(p.usage_amount, p.currency)} (fetched ${time(p.fetched_at)})`;
  }
  if (p?.status === 'none')
    return `none: Stripe has nothing to invoice (fetched ${time(p.fetched_at)})`;
  if (!t.stripe_subscription_id) return '– (no Stripe subscription)';
  return stripeKey ? 'not available' : 'not fetched: STRIPE_SECRET_KEY is not set';
}

/**
 * The current period's usage as enforcement counts it (committed = collected + reserved),
 * flowmeter's overage estimate and Stripe's preview of the upcoming invoice beside it.
 */
function usageRecord(
  t: TenantRow,
  estimate: { amount: number; currency: string },
  invoice: { text: string },
) {
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
    // Claimed into the Stripe ledger: sent, or pending (a dry run sends nothing).
    ['in the Stripe ledger', count(t.reported)],
    ['estimated overage (flowmeter)', money(estimate.amount, estimate.currency)],
    ['upcoming invoice (Stripe)', invoice.text],
  ]);
}

export function registerTenants(tenants: Command, ctx: CommandContext): void {
  const { io } = ctx;

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
        const database = await ctx.openSupabase();
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
    .command('link')
    .description(
      'link a tenant to its Stripe customer, so its usage is reported and its subscription events apply',
    )
    .argument('<tenant>', 'tenant id or external reference', parser(schemas.tenant))
    .requiredOption(
      '--stripe-customer <cus_…>',
      'its Stripe customer',
      parser(schemas.stripeCustomer),
    )
    .option('--json', 'print the tenant as JSON on stdout')
    .action(async (ref: string, options: { stripeCustomer: string; json?: boolean }) => {
      const database = await ctx.openSupabase();
      const found = await database.tenant(ref);
      const tenant = database.unwrap(
        await database.db.rpc('link_stripe_customer', {
          tenant_id: found.id,
          stripe_customer_id: options.stripeCustomer,
        }),
        { conflict: '`flowmeter tenants list --json` shows which tenant holds which customer' },
      );
      if (options.json) return printJson(io, tenant);
      io.out(
        `Tenant ${tenant.name} (${tenant.id}) is linked to Stripe customer ${tenant.stripe_customer_id}.`,
      );
      io.err(
        "Next: resend its subscription event that found no tenant from the Stripe Dashboard (the event's page → Resend), so its plan and period apply now rather than at the next event.",
      );
    });

  addListCommand(tenants, ctx, {
    description: "every tenant, with its plan and this period's usage",
    tenantFilter: {},
    load: (database, filter) => listTenants(database, filter.tenant_ids),
    empty: 'No tenants yet: add one with `flowmeter tenants add <name> --plan <id>`.',
    columns: [
      'id',
      'name',
      'external ref',
      'plan',
      'subscription',
      'sources',
      'committed / quota',
      '%',
    ],
    row: (t) => [
      t.id,
      t.name,
      t.external_ref,
      t.plan_id,
      t.subscription_status,
      t.sources,
      committedOfQuota(t),
      percent(t),
    ],
  });

  tenants
    .command('usage')
    .description(
      "a tenant's usage in its current billing period, with Stripe's preview of the upcoming invoice",
    )
    .argument('<tenant>', 'tenant id or external reference', parser(schemas.tenant))
    .option('--json', 'print JSON on stdout')
    .action(async (ref: string, options: { json?: boolean }) => {
      const { config, database } = await ctx.open(loadInvoicePreviewConfig);
      const tenant = await database.tenant(ref);
      const [summary] = database.unwrap(
        await database.db.rpc('tenant_usage_summary', { tenant_id: tenant.id }),
      );
      const estimate = {
        amount: summary?.estimated_overage_amount ?? 0,
        currency: summary?.currency ?? 'usd',
      };
      const invoice = database.valueOrExit(
        await currentInvoicePreview({
          db: database.db,
          stripe: stripeClientFrom(config),
          log: cliLogger(io.err),
          tenantId: tenant.id,
          maxAgeSeconds: config.INVOICE_PREVIEW_TTL_SECONDS,
        }),
      );
      if (invoice.refreshError) {
        io.err(`Stripe's invoice preview could not be refreshed: ${invoice.refreshError}`);
      }
      if (options.json) {
        return printJson(io, {
          ...tenant,
          estimated_overage_amount: estimate.amount,
          currency: estimate.currency,
          invoice_preview: invoice.preview,
          invoice_preview_error: invoice.refreshError,
        });
      }
      io.out(
        usageRecord(tenant, estimate, {
          text: invoiceText(tenant, invoice, Boolean(config.STRIPE_SECRET_KEY)),
        }),
      );
    });
}
