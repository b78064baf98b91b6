import { type Command, Option } from 'commander';
import { z } from 'zod';
import { loadWebhooksConfig } from '../config/webhooks-env.ts';
import { plural } from '../domain/words.ts';
import { addEndpoint } from '../webhooks/add-endpoint.ts';
import { drainWebhooks } from '../webhooks/deliver-webhooks.ts';
import { WEBHOOK_EVENT_TYPES, type WebhookEventType } from '../webhooks/event-types.ts';
import { webhookDependencies } from '../webhooks/from-config.ts';
import { listDeliveries } from '../webhooks/list-deliveries.ts';
import { listEndpoints } from '../webhooks/list-endpoints.ts';
import { retryGivenUp } from '../webhooks/retry-given-up.ts';
import { rotateSecret } from '../webhooks/rotate-secret.ts';
import { sendTestEvent } from '../webhooks/send-test-event.ts';
import { setEndpointEnabled } from '../webhooks/set-endpoint-enabled.ts';
import { boundedOption, parser } from './arguments.ts';
import { CliError, type CliIo, type CommandContext, EXIT } from './context.ts';
import { addDeliverCommand } from './deliver-command.ts';
import { addEnableCommands } from './enable-commands.ts';
import { addListCommand } from './list-command.ts';
import { cliLogger, count, printJson, short, time } from './output.ts';

const SUBSCRIBABLE = WEBHOOK_EVENT_TYPES.filter((t) => t !== 'webhook.test');

const eventTypes = z
  .string()
  .transform((s) => s.split(',').map((t) => t.trim()))
  .pipe(
    z
      .array(z.string())
      .min(1)
      .transform((types, ctx): WebhookEventType[] => {
        if (types.length === 1 && types[0] === 'all') return [...SUBSCRIBABLE];
        const unknown = types.filter(
          (t) => !(WEBHOOK_EVENT_TYPES as readonly string[]).includes(t),
        );
        if (unknown.length > 0) {
          ctx.addIssue({
            code: 'custom',
            message: `must be all, or event types separated by commas; unknown: ${unknown.join(', ')} (known: ${SUBSCRIBABLE.join(', ')})`,
          });
          return z.NEVER;
        }
        return types as WebhookEventType[];
      }),
  );

const endpointId = z
  .string()
  .trim()
  .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, {
    error: 'must be an endpoint id (see `flowmeter webhooks list`)',
  })
  .transform((id) => id.toLowerCase());

const description = z
  .string()
  .trim()
  .min(1, { error: 'must not be empty' })
  .max(500, { error: 'must be at most 500 characters' });

const ENDPOINT_ID = 'endpoint id (see `flowmeter webhooks list`)';
/** Narrows a command to one endpoint. */
const endpointFilter = () =>
  new Option('--endpoint <id>', 'only this endpoint').argParser(parser(endpointId));

const NOT_FOUND = { notFound: '`flowmeter webhooks list` shows the ids' };

async function openWebhooks(ctx: CommandContext) {
  const { config, database } = await ctx.open(loadWebhooksConfig);
  return {
    database,
    deps: webhookDependencies(config, { log: cliLogger(ctx.io.err), db: database.db }),
  };
}

function printSecret(io: CliIo, secret: string) {
  io.out(`secret: ${secret}`);
  io.err(
    'Store the secret now in the receiver: it is shown only this once (the database holds it encrypted). docs/webhooks.md shows how to verify deliveries with it.',
  );
}

export function registerWebhooks(webhooks: Command, ctx: CommandContext): void {
  const { io } = ctx;

  webhooks
    .command('add')
    .description('register a receiver for some event types; prints its signing secret once')
    .requiredOption('--url <url>', 'where deliveries are POSTed (https; public hosts only)')
    .requiredOption(
      '--events <types>',
      `all, or event types separated by commas: ${SUBSCRIBABLE.join(', ')}`,
      parser(eventTypes),
    )
    .option('--description <text>', 'what the receiver is, for the list', parser(description))
    .option('--json', 'print the endpoint and its secret as JSON on stdout')
    .action(
      async (options: {
        url: string;
        events: WebhookEventType[];
        description?: string;
        json?: boolean;
      }) => {
        const { database, deps } = await openWebhooks(ctx);
        const { endpoint, secret } = database.valueOrExit(
          await addEndpoint({
            ...deps,
            url: options.url,
            eventTypes: options.events,
            ...(options.description ? { description: options.description } : {}),
          }),
        );
        if (options.json) return printJson(io, { ...endpoint, secret });
        io.out(`endpoint ${endpoint.id}: ${endpoint.url}`);
        io.out(`events: ${endpoint.event_types.join(', ')}`);
        printSecret(io, secret);
      },
    );

  addListCommand(webhooks, ctx, {
    description: 'endpoints with what each delivered, is retrying and gave up on',
    load: async (database) => database.valueOrExit(await listEndpoints({ db: database.db })),
    empty:
      'No webhook endpoints: add one with `flowmeter webhooks add --url https://… --events all`.',
    columns: [
      'id',
      'url',
      'events',
      'enabled',
      'delivered',
      'pending',
      'failing',
      'given up',
      'last',
    ],
    row: (e) => [
      e.id,
      short(e.url),
      e.event_types.length === SUBSCRIBABLE.length ? 'all' : e.event_types.join(', '),
      e.enabled ? 'yes' : 'no',
      count(e.delivered),
      count(e.pending),
      count(e.failing),
      count(e.given_up),
      e.last_delivered_at ? time(e.last_delivered_at) : 'never',
    ],
  });

  /** A subcommand about one endpoint, named by its id. */
  const endpointCommand = (name: string, description: string) =>
    webhooks
      .command(name)
      .description(description)
      .argument('<id>', ENDPOINT_ID, parser(endpointId));

  addEnableCommands(webhooks, ctx, {
    description: {
      enable: 'deliver to the endpoint again, its waiting deliveries included',
      disable: 'stop delivering: due deliveries wait until it is enabled, events meanwhile skip it',
    },
    id: { description: ENDPOINT_ID, parse: parser(endpointId) },
    json: 'print the endpoint as JSON on stdout',
    set: async (database, id: string, enabled) =>
      database.valueOrExit(
        await setEndpointEnabled({ db: database.db, endpointId: id, enabled }),
        NOT_FOUND,
      ),
    done: (endpoint, enabled) =>
      io.out(`endpoint ${endpoint.id}: ${enabled ? 'enabled' : 'disabled'}`),
  });

  endpointCommand(
    'rotate-secret',
    'a new signing secret; the old one keeps signing beside it for the grace period',
  )
    .addOption(
      boundedOption(
        '--grace-hours <hours>',
        'how long deliveries also carry the old signature',
        [0, 720],
        24,
      ),
    )
    .option('--json', 'print the endpoint and its new secret as JSON on stdout')
    .action(async (id: string, options: { graceHours: number; json?: boolean }) => {
      const { database, deps } = await openWebhooks(ctx);
      const { endpoint, secret } = database.valueOrExit(
        await rotateSecret({
          db: deps.db,
          keyring: deps.keyring,
          endpointId: id,
          graceSeconds: options.graceHours * 3600,
        }),
        NOT_FOUND,
      );
      if (options.json) return printJson(io, { ...endpoint, secret });
      io.out(
        `endpoint ${endpoint.id}: new secret signs now; the previous one also signs for ${options.graceHours} h`,
      );
      printSecret(io, secret);
    });

  endpointCommand('test', 'send a webhook.test event to the endpoint now and show the outcome')
    .option('--json', 'print the delivery as JSON on stdout')
    .action(async (id: string, options: { json?: boolean }) => {
      const { database, deps } = await openWebhooks(ctx);
      const [endpoint] = database.valueOrExit(
        await listEndpoints({ db: deps.db, endpointIds: [id] }),
      );
      if (!endpoint) {
        throw new CliError(EXIT.usage, `no webhook endpoint ${id}: ${NOT_FOUND.notFound}`);
      }
      if (!endpoint.enabled) {
        throw new CliError(
          EXIT.usage,
          `endpoint ${id} is disabled: \`flowmeter webhooks enable ${id}\` first`,
        );
      }
      const event = database.valueOrExit(await sendTestEvent({ db: deps.db, endpointId: id }));
      database.valueOrExit(await drainWebhooks({ ...deps, endpointIds: [id] }));
      const deliveries = database.valueOrExit(
        await listDeliveries({ db: deps.db, endpointIds: [id], failedOnly: false, maxRows: 20 }),
      );
      const delivery = deliveries.find((d) => d.event_id === event.id);
      if (!delivery) throw new Error(`the test event ${event.id} has no delivery to ${id}`);
      if (delivery.status !== 'delivered') ctx.exit(EXIT.failed);
      if (options.json) return printJson(io, delivery);
      io.out(
        delivery.status === 'delivered'
          ? `${event.id} delivered (HTTP ${delivery.last_status})`
          : `${event.id} not delivered: ${delivery.last_error ?? delivery.status}; retried on the schedule in docs/webhooks.md`,
      );
    });

  addListCommand(webhooks, ctx, {
    name: 'deliveries',
    description: 'deliveries, newest first',
    options: (command) =>
      command
        .option('--failed', 'only those failing (to be retried) or given up')
        .addOption(endpointFilter())
        .addOption(boundedOption('--limit <n>', 'at most this many', [1, 1000], 50)),
    load: async (database, _, options: { failed?: boolean; endpoint?: string; limit: number }) =>
      database.valueOrExit(
        await listDeliveries({
          db: database.db,
          failedOnly: options.failed ?? false,
          maxRows: options.limit,
          ...(options.endpoint ? { endpointIds: [options.endpoint] } : {}),
        }),
      ),
    empty: (options) => (options.failed ? 'No failed deliveries.' : 'No deliveries yet.'),
    columns: ['webhook id', 'type', 'endpoint', 'status', 'attempts', 'next', 'last error'],
    row: (d) => [
      d.event_id,
      d.event_type,
      d.endpoint_id,
      d.status,
      d.attempts,
      d.next_attempt_at ? time(d.next_attempt_at) : '',
      short(d.last_error),
    ],
    advice: (rows) =>
      rows.some((d) => d.status === 'given_up')
        ? 'Given-up deliveries start over with `flowmeter webhooks retry <endpoint id>` once the receiver is fixed.'
        : undefined,
  });

  endpointCommand(
    'retry',
    'give the endpoint’s given-up deliveries a fresh set of attempts, due now',
  )
    .option('--json', 'print the count as JSON on stdout')
    .action(async (id: string, options: { json?: boolean }) => {
      const database = await ctx.openSupabase();
      const retried = database.valueOrExit(
        await retryGivenUp({ db: database.db, endpointId: id }),
        NOT_FOUND,
      );
      if (options.json) return printJson(io, { retried });
      io.out(
        `${plural(retried, 'given-up delivery', 'given-up deliveries')} due again; \`flowmeter webhooks deliver\` sends them now`,
      );
    });

  addDeliverCommand(webhooks, ctx, {
    description: 'send due deliveries now (what the every-minute deliver-webhooks does)',
    only: endpointFilter(),
    run: async (options: { endpoint?: string }) => {
      const { database, deps } = await openWebhooks(ctx);
      return database.valueOrExit(
        await drainWebhooks({
          ...deps,
          ...(options.endpoint ? { endpointIds: [options.endpoint] } : {}),
        }),
      );
    },
  });
}
