import type { Command } from 'commander';
import { type CollectorConfig, loadCollectorConfig } from '../config/env.ts';
import { plural } from '../domain/words.ts';
import { CREDENTIALS_IN_URL, type N8nExecution } from '../n8n/client.ts';
import { acknowledgeGaps } from '../sources/acknowledge-gaps.ts';
import { addSource } from '../sources/add-source.ts';
import { resealSourceKeys } from '../sources/reseal-source-keys.ts';
import { setSourceKey } from '../sources/set-source-key.ts';
import { checkSourceUrl } from '../sources/source-url.ts';
import { testSource } from '../sources/test-source.ts';
import { parser, repeatable, schemas, tenantFilterOption, tenantOption } from './arguments.ts';
import { CliError, type CommandContext, type Database, EXIT, valueOrStdin } from './context.ts';
import { addEnableCommands } from './enable-commands.ts';
import { addFilteredList } from './list-command.ts';
import { count, duration, printJson, renderRecord, sourceError, time } from './output.ts';
import { createProgress } from './progress.ts';

const describeLatest = (latest: N8nExecution | null) =>
  latest
    ? `latest execution #${latest.id} (${latest.status}, ${time(latest.startedAt)})`
    : 'no executions yet';

const connection = (tested: boolean, latest: N8nExecution | null) =>
  tested ? `ok, ${describeLatest(latest)}` : 'not tested';

const listHint = '`flowmeter sources list` shows the ids';

/** What every source operation needs from the CLI's configuration. */
const sourceDependencies = (config: CollectorConfig, database: Database) => ({
  db: database.db,
  keyring: config.FLOWMETER_ENCRYPTION_KEYS,
  timeoutMs: config.N8N_REQUEST_TIMEOUT_MS,
});

/** A source as --json prints it after a write that may have tested the connection first. */
const testedSource = (source: object, tested: boolean, latest: N8nExecution | null) => ({
  ...source,
  tested,
  latest_execution: latest,
});

interface AddOptions {
  tenant: string;
  url: string;
  apiKey: string;
  name?: string;
  project?: string;
  test: boolean;
  json?: boolean;
}

const parseSourceUrl = parser(schemas.n8nUrl);

/**
 * Commander repeats a refused value in its message; the sources' own check runs first, so a
 * URL carrying a password is refused without repeating it.
 */
function sourceUrl(value: string): string {
  const checked = checkSourceUrl(value);
  if (!checked.ok && checked.error.message === CREDENTIALS_IN_URL) {
    throw new CliError(EXIT.usage, `--url: ${CREDENTIALS_IN_URL}`);
  }
  return parseSourceUrl(value);
}

export function registerSources(sources: Command, ctx: CommandContext): void {
  const { io } = ctx;

  sources
    .command('add')
    .description('test the connection to an n8n instance, then store it with its key encrypted')
    .addOption(tenantOption())
    .requiredOption('--url <url>', "the n8n instance's URL", sourceUrl)
    .requiredOption(
      '--api-key <key>',
      'an n8n API key, or - to read it from standard input (keeps it out of shell history)',
      parser(schemas.apiKey),
    )
    .option('--name <name>', 'a label (default: the host name)', parser(schemas.name))
    .option('--project <id>', 'only this n8n project (Enterprise)', parser(schemas.projectId))
    .option('--no-test', 'store it without testing the connection first')
    .option('--json', 'print the source as JSON on stdout')
    .action(async (options: AddOptions) => {
      const { config, database } = await ctx.open(loadCollectorConfig);
      const apiKey = await valueOrStdin(io, options.apiKey, '--api-key', 'the key');
      const tenant = await database.tenant(options.tenant);
      const { source, latestExecution } = database.valueOrExit(
        await addSource({
          ...sourceDependencies(config, database),
          tenantId: tenant.id,
          baseUrl: options.url,
          apiKey,
          test: options.test,
          ...(options.name ? { name: options.name } : {}),
          ...(options.project ? { projectId: options.project } : {}),
        }),
        {
          conflict: `tenant ${tenant.name} already has a source for ${options.url}${options.project ? ` and project ${options.project}` : ''}; \`flowmeter sources list\` shows it`,
        },
      );
      if (options.json) return printJson(io, testedSource(source, options.test, latestExecution));
      io.out(
        renderRecord([
          ['id', source.id],
          ['tenant', `${tenant.name} (${tenant.id})`],
          ['name', source.name],
          ['url', source.base_url],
          ['project', source.project_id],
          ['connection', connection(options.test, latestExecution)],
        ]),
      );
      io.err(
        `The next scheduled collection picks it up; to collect now: \`flowmeter collect --source ${source.id}\``,
      );
    });

  sources
    .command('test')
    .description("decrypt a source's key and test the connection to its n8n")
    .argument('<id>', 'source id (see `flowmeter sources list`)', parser(schemas.sourceId))
    .option('--json', 'print the result as JSON on stdout')
    .action(async (id: string, options: { json?: boolean }) => {
      const { config, database } = await ctx.open(loadCollectorConfig);
      const { source, probe } = database.valueOrExit(
        await testSource({
          ...sourceDependencies(config, database),
          sourceId: id,
        }),
        { notFound: '`flowmeter sources list` shows them' },
      );
      if (options.json) {
        printJson(io, {
          source_id: source.id,
          base_url: source.base_url,
          ...(probe.ok
            ? { ok: true, latest_execution: probe.value.latestExecution }
            : { ok: false, error: probe.error.message }),
        });
      } else if (probe.ok) {
        io.out(`ok: ${source.base_url} answered; ${describeLatest(probe.value.latestExecution)}`);
      } else {
        io.err(`failed: ${probe.error.message}`);
      }
      if (!probe.ok) ctx.exit(EXIT.failed);
    });

  addFilteredList(sources, ctx, {
    description: 'sources with their collection health: lag, failures, open executions, gaps',
    rpc: 'list_n8n_sources',
    empty:
      'No sources: add one with `flowmeter sources add --tenant <tenant> --url <n8n URL> --api-key -`.',
    columns: [
      'id',
      'tenant',
      'url',
      'enabled',
      'last success',
      'lag',
      'failures',
      'last error',
      'open',
      'gaps',
    ],
    row: (s) => [
      s.id,
      s.tenant_name,
      s.base_url + (s.project_id ? ` (project ${s.project_id})` : ''),
      s.enabled ? 'yes' : 'no',
      s.last_success_at ? time(s.last_success_at) : 'never',
      duration(s.lag_seconds),
      s.consecutive_failures,
      sourceError(s.last_error, s.base_url),
      count(s.open_executions),
      count(s.gaps),
    ],
  });

  addEnableCommands(sources, ctx, {
    description: {
      enable: 'collect from a source again, from where it stopped; the next collection picks it up',
      disable:
        'stop collecting from a source (an n8n instance gone, a tenant leaving); what it collected stays',
    },
    id: {
      description: 'source id (see `flowmeter sources list`)',
      parse: parser(schemas.sourceId),
    },
    json: 'print the source as JSON on stdout',
    set: async (database, id: string, enabled) => {
      const { api_key_ciphertext: _secret, ...shown } = database.unwrap(
        await database.db.rpc('set_n8n_source_enabled', { source_id: id, enabled }),
        { notFound: listHint },
      );
      return shown;
    },
    done: (source, enabled) => {
      io.out(`${source.name} (${source.base_url}): ${enabled ? 'enabled' : 'disabled'}`);
      if (enabled) io.err(`To collect now: \`flowmeter collect --source ${source.id}\``);
    },
  });

  sources
    .command('set-key')
    .description(
      "replace a source's n8n API key (rotated or revoked in n8n): tests it, stores it encrypted, and collection retries at once",
    )
    .argument('<id>', 'source id (see `flowmeter sources list`)', parser(schemas.sourceId))
    .requiredOption(
      '--api-key <key>',
      'the new n8n API key, or - to read it from standard input (keeps it out of shell history)',
      parser(schemas.apiKey),
    )
    .option('--no-test', 'store it without testing the connection first')
    .option('--json', 'print the source as JSON on stdout')
    .action(async (id: string, options: { apiKey: string; test: boolean; json?: boolean }) => {
      const { config, database } = await ctx.open(loadCollectorConfig);
      const apiKey = await valueOrStdin(io, options.apiKey, '--api-key', 'the key');
      const { source, latestExecution } = database.valueOrExit(
        await setSourceKey({
          ...sourceDependencies(config, database),
          sourceId: id,
          apiKey,
          test: options.test,
        }),
        { notFound: listHint },
      );
      if (options.json) return printJson(io, testedSource(source, options.test, latestExecution));
      io.out(
        `${source.name} (${source.base_url}): key replaced; connection ${connection(options.test, latestExecution)}`,
      );
      io.err(
        source.enabled
          ? `The next scheduled collection uses it; to collect now: \`flowmeter collect --source ${id}\``
          : `The source is disabled: \`flowmeter sources enable ${id}\` collects from it again`,
      );
    });

  sources
    .command('acknowledge-gaps')
    .description(
      'mark the recorded gaps (executions possibly uncounted) as seen, so status stops flagging them',
    )
    .option('-s, --source <id>', 'only this source (repeatable)', repeatable(schemas.sourceId))
    .addOption(tenantFilterOption())
    .option('--json', 'print {acknowledged} on stdout')
    .action(async (options: { source?: string[]; tenant?: string[]; json?: boolean }) => {
      const database = await ctx.openSupabase();
      const tenantIds = await database.tenantIds(options.tenant);
      const acknowledged = database.valueOrExit(
        await acknowledgeGaps({
          db: database.db,
          ...(options.source ? { sourceIds: options.source } : {}),
          ...(tenantIds ? { tenantIds } : {}),
        }),
      );
      if (options.json) return printJson(io, { acknowledged });
      io.out(
        `${plural(acknowledged, 'gap')} acknowledged; \`flowmeter status\` flags only gaps recorded from now on`,
      );
    });

  sources
    .command('reseal')
    .description(
      'after putting a new key first in FLOWMETER_ENCRYPTION_KEYS: re-encrypt every stored n8n API key under it, so older keys can be removed',
    )
    .addOption(tenantFilterOption())
    .option('--json', 'print the summary as JSON on stdout')
    .action(async (options: { tenant?: string[]; json?: boolean }) => {
      const { config, database } = await ctx.open(loadCollectorConfig);
      const tenantIds = await database.tenantIds(options.tenant);
      const progress = options.json ? undefined : createProgress(io, 'resealing', 'key');
      const summary = database.valueOrExit(
        await resealSourceKeys({
          db: database.db,
          keyring: config.FLOWMETER_ENCRYPTION_KEYS,
          ...(tenantIds ? { tenantIds } : {}),
          onProgress: (event) =>
            event.type === 'due' ? progress?.start(event.sources) : progress?.increment(),
        }).finally(() => progress?.stop()),
      );
      const due = summary.resealed + summary.changedMeanwhile + summary.undecryptable.length;
      if (options.json) printJson(io, summary);
      else {
        io.out(
          `${summary.resealed} of ${plural(summary.sources, 'source key')} re-encrypted under "${summary.key}"; ${summary.sources - due} already ${summary.sources - due === 1 ? 'was' : 'were'}${summary.changedMeanwhile ? `; ${summary.changedMeanwhile} changed meanwhile and ${summary.changedMeanwhile === 1 ? 'was' : 'were'} left alone` : ''}`,
        );
      }
      if (summary.undecryptable.length > 0) {
        throw new CliError(
          EXIT.failed,
          `${plural(summary.undecryptable.length, 'source key')} ${summary.undecryptable.length === 1 ? 'decrypts' : 'decrypt'} with none of FLOWMETER_ENCRYPTION_KEYS (${summary.undecryptable.join(', ')}): add back the key they were stored with and run again, or give each a new key with \`flowmeter sources set-key\``,
        );
      }
      if (summary.changedMeanwhile > 0) {
        // Not done: a script must not go on to remove the older keys.
        if (!options.json) {
          io.err('Some keys changed while this ran: run it again before removing older keys.');
        }
        ctx.exit(EXIT.failed);
      } else if (!options.json) {
        io.err(
          `Every source key is under "${summary.key}": the other FLOWMETER_ENCRYPTION_KEYS entries can be removed.`,
        );
      }
    });
}
