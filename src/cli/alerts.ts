import { type Command, Option } from 'commander';
import { z } from 'zod';
import { alertDependencies, drainAlerts } from '../alerts/from-config.ts';
import { loadAlertsConfig } from '../config/alerts-env.ts';
import { parser, tenantFilterOption, tenantOption } from './arguments.ts';
import { CliError, type CommandContext, EXIT, valueOrStdin } from './context.ts';
import { addDeliverCommand } from './deliver-command.ts';
import { addEnableCommands } from './enable-commands.ts';
import { addFilteredList } from './list-command.ts';
import { cliLogger, count, printJson, time } from './output.ts';

const SLACK = 'a Slack incoming-webhook URL (https://hooks.slack.com/services/…)';
const EMAIL = 'an e-mail address, like ops@example.com';

/** The same rules as alert_channels' check constraint, said so a person can act on them. */
const targets = {
  slack: z
    .string()
    .trim()
    .regex(/^https:\/\/hooks\.slack\.com\/\S+$/, { error: `must be ${SLACK}` }),
  email: z
    .string()
    .trim()
    .regex(/^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$/, { error: `must be ${EMAIL}` }),
};

const channelId = z
  .string()
  .regex(/^[1-9]\d{0,15}$/, {
    error: 'must be a channel id (see `flowmeter alerts channels list`)',
  })
  .transform(Number);

interface AddOptions {
  kind: 'slack' | 'email';
  target: string;
  tenant?: string;
  json?: boolean;
}

export function registerAlerts(alerts: Command, ctx: CommandContext): void {
  const { io } = ctx;

  addDeliverCommand(alerts, ctx, {
    description:
      'send pending and due alert deliveries now (what the 5-minute deliver-alerts does)',
    only: tenantFilterOption(" (its channels' and the global channels' deliveries)"),
    run: async (options: { tenant?: string[] }) => {
      const { config, database } = await ctx.open(loadAlertsConfig);
      const tenantIds = await database.tenantIds(options.tenant);
      return database.valueOrExit(
        await drainAlerts({
          ...alertDependencies(config, { log: cliLogger(io.err), db: database.db }),
          ...(tenantIds ? { tenantIds } : {}),
        }),
      );
    },
    advice: '`flowmeter status` lists what is not delivered; docs/alerts.md explains retries.',
  });

  const channels = alerts
    .command('channels')
    .description('Slack webhooks and e-mail addresses that receive alerts, per tenant or global');

  channels
    .command('add')
    .description("add a channel for one tenant's alerts, or without --tenant for every tenant's")
    .addOption(
      new Option('--kind <kind>', 'slack or email')
        .choices(['slack', 'email'])
        .makeOptionMandatory(),
    )
    .requiredOption(
      '--target <target>',
      `${SLACK}, ${EMAIL}, or - to read it from standard input (keeps a webhook URL out of shell history)`,
    )
    .addOption(tenantOption('only'))
    .option('--json', 'print the channel as JSON on stdout')
    .action(async (options: AddOptions) => {
      const raw = await valueOrStdin(io, options.target, '--target', 'the webhook URL or address');
      const parsed = targets[options.kind].safeParse(raw);
      if (!parsed.success) {
        throw new CliError(
          EXIT.usage,
          `--target ${parsed.error.issues[0]?.message ?? 'is invalid'}. Nothing was stored.`,
        );
      }
      const database = await ctx.openSupabase();
      const tenant = options.tenant ? await database.tenant(options.tenant) : undefined;
      const channel = database.unwrap(
        await database.db.rpc('add_alert_channel', {
          kind: options.kind,
          target: parsed.data,
          ...(tenant ? { tenant_id: tenant.id } : {}),
        }),
      );
      const { target: _secret, ...shown } = channel;
      if (options.json) return printJson(io, shown);
      io.out(
        `channel ${channel.id}: ${channel.kind} for ${tenant ? `${tenant.name}'s alerts` : "every tenant's alerts"}, enabled`,
      );
      io.err(
        'It receives alerts raised from now on; `flowmeter alerts deliver` sends due ones now.',
      );
    });

  addFilteredList(channels, ctx, {
    description: 'channels with what each has delivered (Slack webhook URLs shortened: secrets)',
    tenantFilter: { note: ' (and the global channels)' },
    rpc: 'list_alert_channels',
    empty:
      'No alert channels: add one with `flowmeter alerts channels add --kind slack --target -`.',
    columns: [
      'id',
      'tenant',
      'kind',
      'target',
      'enabled',
      'delivered',
      'pending',
      'given up',
      'last',
    ],
    row: (c) => [
      c.id,
      c.tenant_name ?? '(all tenants)',
      c.kind,
      c.target,
      c.enabled ? 'yes' : 'no',
      count(c.delivered),
      count(c.pending),
      count(c.given_up),
      c.last_delivered_at ? time(c.last_delivered_at) : 'never',
    ],
  });

  addEnableCommands(channels, ctx, {
    description: {
      enable: 'send to the channel again, pending deliveries included',
      disable:
        'stop sending to the channel: pending deliveries wait until it is enabled, alerts raised meanwhile skip it',
    },
    id: {
      description: 'channel id (see `flowmeter alerts channels list`)',
      parse: parser(channelId),
    },
    json: 'print the channel as JSON on stdout',
    set: async (database, id: number, enabled) => {
      const { target: _secret, ...shown } = database.unwrap(
        await database.db.rpc('set_alert_channel_enabled', { channel_id: id, enabled }),
        { notFound: '`flowmeter alerts channels list` shows the ids' },
      );
      return shown;
    },
    done: (channel, enabled) =>
      io.out(`channel ${channel.id}: ${enabled ? 'enabled' : 'disabled'}`),
  });
}
