import type { Command } from 'commander';
import { type CollectorConfig, loadCollectorConfig } from '../config/env.ts';
import type { Keyring } from '../crypto/keyring.ts';
import { DecryptionError, needsRotation } from '../crypto/secret-box.ts';
import { openApiKey, sealApiKey } from '../n8n/api-key.ts';
import {
  CREDENTIALS_IN_URL,
  createN8nClient,
  N8nApiError,
  type N8nExecution,
} from '../n8n/client.ts';
import { parser, repeatable, schemas } from './arguments.ts';
import {
  CliError,
  type CommandContext,
  type Database,
  EXIT,
  filteredTenantIds,
  loadEnvironment,
  loadSupabaseConfig,
  openDatabase,
  resolveTenant,
  tenantFilterOption,
  valueOrStdin,
} from './context.ts';
import {
  count,
  duration,
  printJson,
  renderRecord,
  renderTable,
  sourceError,
  time,
} from './output.ts';
import { createProgress } from './progress.ts';

type ProbeResult =
  | { ok: true; latestExecution: N8nExecution | null }
  | { ok: false; error: string };

/** What to change for each way n8n can refuse; the client's message says what happened. */
const PROBE_HINTS: Partial<Record<N8nApiError['kind'], string>> = {
  unauthorized: 'create an API key in n8n (Settings → n8n API) and pass it with --api-key',
  forbidden: 'give the key the execution:list and execution:read scopes',
  network: 'check the URL and that this machine can reach it',
  timeout: 'check the URL, or raise N8N_REQUEST_TIMEOUT_MS',
  bad_request: 'check the URL: it is the instance root, like https://acme.app.n8n.cloud',
};

/** One `GET /api/v1/executions?limit=1` with the collector's client: what collection will do. */
async function probe(
  config: CollectorConfig,
  source: { baseUrl: string; apiKey: string; projectId?: string | null },
): Promise<ProbeResult> {
  const client = createN8nClient({
    baseUrl: source.baseUrl,
    apiKey: source.apiKey,
    timeoutMs: config.N8N_REQUEST_TIMEOUT_MS,
    // An operator waiting at the prompt wants an answer, not a minute of backoff.
    retries: 1,
  });
  try {
    const page = await client.listExecutions({
      limit: 1,
      ...(source.projectId ? { projectId: source.projectId } : {}),
    });
    return { ok: true, latestExecution: page.data[0] ?? null };
  } catch (error) {
    if (!(error instanceof N8nApiError)) throw error;
    const hint = PROBE_HINTS[error.kind];
    return { ok: false, error: hint ? `${error.message}; ${hint}` : error.message };
  }
}

const describeLatest = (latest: N8nExecution | null) =>
  latest
    ? `latest execution #${latest.id} (${latest.status}, ${time(latest.startedAt)})`
    : 'no executions yet';

/**
 * With `test`, the probe must pass before anything is written: its failure is a CliError
 * ending in `unchanged` (what the command did not do). The latest execution when tested.
 */
async function testFirst(
  config: CollectorConfig,
  test: boolean,
  source: { baseUrl: string; apiKey: string; projectId?: string | null },
  unchanged: string,
): Promise<N8nExecution | null> {
  if (!test) return null;
  const result = await probe(config, source);
  if (!result.ok) throw new CliError(EXIT.failed, `${result.error}. ${unchanged}`);
  return result.latestExecution;
}

const connection = (tested: boolean, latest: N8nExecution | null) =>
  tested ? `ok, ${describeLatest(latest)}` : 'not tested';

/** A source's URL, project and stored key, or a usage error naming the unknown id. */
async function credentialsOf(database: Database, id: string) {
  const [source] = database.unwrap(
    await database.db.rpc('n8n_source_credentials', { source_ids: [id] }),
  );
  if (!source) {
    throw new CliError(
      EXIT.usage,
      `no source has the id ${id}: \`flowmeter sources list\` shows them`,
    );
  }
  return source;
}

/** The stored key in clear, or why none of the configured keys decrypts it. */
function openStoredKey(
  keyring: Keyring,
  source: { tenant_id: string; api_key_ciphertext: string },
): { apiKey: string } | { undecryptable: string } {
  try {
    return { apiKey: openApiKey(keyring, source.tenant_id, source.api_key_ciphertext) };
  } catch (error) {
    if (!(error instanceof DecryptionError)) throw error;
    return { undecryptable: error.message };
  }
}

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
 * Commander repeats a refused value in its message; a URL carrying a password is refused
 * without repeating it.
 */
function sourceUrl(value: string): string {
  const url = URL.parse(value.trim());
  if (url && (url.username !== '' || url.password !== '')) {
    throw new CliError(EXIT.usage, `--url: ${CREDENTIALS_IN_URL}`);
  }
  return parseSourceUrl(value);
}

export function registerSources(program: Command, ctx: CommandContext): void {
  const { io } = ctx;
  const sources = program
    .command('sources')
    .description("tenants' n8n instances whose executions are metered");

  sources
    .command('add')
    .description('test the connection to an n8n instance, then store it with its key encrypted')
    .requiredOption('--tenant <tenant>', 'tenant id or external reference', parser(schemas.tenant))
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
      const config = await loadEnvironment(io, loadCollectorConfig);
      const apiKey = await valueOrStdin(io, options.apiKey, '--api-key', 'the key');
      const database = openDatabase(config);
      const tenant = await resolveTenant(database, options.tenant);

      const latest = await testFirst(
        config,
        options.test,
        { baseUrl: options.url, apiKey, projectId: options.project ?? null },
        'Nothing was stored.',
      );

      const source = database.unwrap(
        await database.db.rpc('add_n8n_source', {
          tenant_id: tenant.id,
          name: options.name ?? new URL(options.url).host,
          base_url: options.url,
          api_key_ciphertext: sealApiKey(config.FLOWMETER_ENCRYPTION_KEYS, tenant.id, apiKey),
          ...(options.project ? { project_id: options.project } : {}),
        }),
        {
          conflict: `tenant ${tenant.name} already has a source for ${options.url}${options.project ? ` and project ${options.project}` : ''}; \`flowmeter sources list\` shows it`,
        },
      );
      const { api_key_ciphertext: _, ...shown } = source;
      if (options.json) {
        return printJson(io, {
          ...shown,
          tested: options.test,
          latest_execution: latest,
        });
      }
      io.out(
        renderRecord([
          ['id', source.id],
          ['tenant', `${tenant.name} (${tenant.id})`],
          ['name', source.name],
          ['url', source.base_url],
          ['project', source.project_id],
          ['connection', connection(options.test, latest)],
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
      const config = await loadEnvironment(io, loadCollectorConfig);
      const database = openDatabase(config);
      const source = await credentialsOf(database, id);
      const stored = openStoredKey(config.FLOWMETER_ENCRYPTION_KEYS, source);
      if ('undecryptable' in stored) {
        throw new CliError(
          EXIT.failed,
          `cannot decrypt the source's API key: ${stored.undecryptable}. FLOWMETER_ENCRYPTION_KEYS must hold the key it was stored with`,
        );
      }
      const result = await probe(config, {
        baseUrl: source.base_url,
        apiKey: stored.apiKey,
        projectId: source.project_id,
      });
      if (options.json) {
        printJson(io, {
          source_id: source.id,
          base_url: source.base_url,
          ...(result.ok
            ? { ok: true, latest_execution: result.latestExecution }
            : { ok: false, error: result.error }),
        });
      } else if (result.ok) {
        io.out(`ok: ${source.base_url} answered; ${describeLatest(result.latestExecution)}`);
      } else {
        io.err(`failed: ${result.error}`);
      }
      if (!result.ok) ctx.exit(EXIT.failed);
    });

  sources
    .command('list')
    .description('sources with their collection health: lag, failures, open executions, gaps')
    .addOption(tenantFilterOption())
    .option('--json', 'print JSON on stdout')
    .action(async (options: { tenant?: string[]; json?: boolean }) => {
      const database = openDatabase(await loadEnvironment(io, loadSupabaseConfig));
      const tenantIds = await filteredTenantIds(database, options.tenant);
      const rows = database.unwrap(
        await database.db.rpc('list_n8n_sources', tenantIds ? { tenant_ids: tenantIds } : {}),
      );
      if (options.json) return printJson(io, rows);
      if (rows.length === 0) {
        io.out(
          'No sources: add one with `flowmeter sources add --tenant <tenant> --url <n8n URL> --api-key -`.',
        );
        return;
      }
      io.out(
        renderTable(
          [
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
          rows.map((s) => [
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
          ]),
        ),
      );
    });

  for (const [name, enabled] of [
    ['enable', true],
    ['disable', false],
  ] as const) {
    sources
      .command(name)
      .description(
        enabled
          ? 'collect from a source again, from where it stopped; the next collection picks it up'
          : 'stop collecting from a source (an n8n instance gone, a tenant leaving); what it collected stays',
      )
      .argument('<id>', 'source id (see `flowmeter sources list`)', parser(schemas.sourceId))
      .option('--json', 'print the source as JSON on stdout')
      .action(async (id: string, options: { json?: boolean }) => {
        const database = openDatabase(await loadEnvironment(io, loadSupabaseConfig));
        const source = database.unwrap(
          await database.db.rpc('set_n8n_source_enabled', { source_id: id, enabled }),
          { notFound: '`flowmeter sources list` shows the ids' },
        );
        const { api_key_ciphertext: _secret, ...shown } = source;
        if (options.json) return printJson(io, shown);
        io.out(`${source.name} (${source.base_url}): ${enabled ? 'enabled' : 'disabled'}`);
        if (enabled) {
          io.err(`To collect now: \`flowmeter collect --source ${source.id}\``);
        }
      });
  }

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
      const config = await loadEnvironment(io, loadCollectorConfig);
      const apiKey = await valueOrStdin(io, options.apiKey, '--api-key', 'the key');
      const database = openDatabase(config);
      const source = await credentialsOf(database, id);
      const latest = await testFirst(
        config,
        options.test,
        { baseUrl: source.base_url, apiKey, projectId: source.project_id },
        'The stored key was not changed.',
      );
      const updated = database.unwrap(
        await database.db.rpc('set_n8n_source_key', {
          source_id: id,
          api_key_ciphertext: sealApiKey(
            config.FLOWMETER_ENCRYPTION_KEYS,
            source.tenant_id,
            apiKey,
          ),
        }),
        { notFound: '`flowmeter sources list` shows the ids' },
      );
      const { api_key_ciphertext: _secret, ...shown } = updated;
      if (options.json) {
        return printJson(io, { ...shown, tested: options.test, latest_execution: latest });
      }
      io.out(
        `${updated.name} (${updated.base_url}): key replaced; connection ${connection(options.test, latest)}`,
      );
      io.err(
        updated.enabled
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
      const database = openDatabase(await loadEnvironment(io, loadSupabaseConfig));
      const tenantIds = await filteredTenantIds(database, options.tenant);
      const acknowledged = database.unwrap(
        await database.db.rpc('acknowledge_collection_gaps', {
          ...(options.source ? { source_ids: options.source } : {}),
          ...(tenantIds ? { tenant_ids: tenantIds } : {}),
        }),
      );
      if (options.json) return printJson(io, { acknowledged });
      io.out(
        `${acknowledged} gap${acknowledged === 1 ? '' : 's'} acknowledged; \`flowmeter status\` flags only gaps recorded from now on`,
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
      const config = await loadEnvironment(io, loadCollectorConfig);
      const keyring = config.FLOWMETER_ENCRYPTION_KEYS;
      const database = openDatabase(config);
      const tenantIds = await filteredTenantIds(database, options.tenant);
      const stored = database.unwrap(
        await database.db.rpc('n8n_source_credentials', tenantIds ? { tenant_ids: tenantIds } : {}),
      );
      const due = stored.filter((s) => needsRotation(keyring, s.api_key_ciphertext));
      const summary = {
        key: keyring.activeKeyId,
        sources: stored.length,
        resealed: 0,
        // Given a new key by `sources set-key` between the read and the write: left alone.
        changedMeanwhile: 0,
        undecryptable: [] as string[],
      };
      const progress = options.json ? undefined : createProgress(io, 'resealing', 'keys');
      progress?.start(due.length);
      const reseal = async (source: (typeof due)[number]) => {
        const stored = openStoredKey(keyring, source);
        if ('undecryptable' in stored) {
          summary.undecryptable.push(source.id);
          return;
        }
        const response = await database.db.rpc('set_n8n_source_key', {
          source_id: source.id,
          api_key_ciphertext: sealApiKey(keyring, source.tenant_id, stored.apiKey),
          expected_ciphertext: source.api_key_ciphertext,
        });
        // set_n8n_source_key's own answers: the key changed, or the source was removed,
        // since it was read (a missing function is 404 too, and goes to unwrap).
        const code = response.error?.code;
        if (code === 'PT409' || code === 'PT404') summary.changedMeanwhile += 1;
        else {
          database.unwrap(response);
          summary.resealed += 1;
        }
      };
      try {
        for (const source of due) {
          await reseal(source);
          progress?.increment();
        }
      } finally {
        progress?.stop();
      }

      if (options.json) printJson(io, summary);
      else {
        io.out(
          `${summary.resealed} of ${summary.sources} source keys re-encrypted under "${summary.key}"; ${summary.sources - due.length} already were${summary.changedMeanwhile ? `; ${summary.changedMeanwhile} changed meanwhile and were left alone` : ''}`,
        );
      }
      if (summary.undecryptable.length > 0) {
        throw new CliError(
          EXIT.failed,
          `${summary.undecryptable.length} source keys decrypt with none of FLOWMETER_ENCRYPTION_KEYS (${summary.undecryptable.join(', ')}): add back the key they were stored with and run again, or give each a new key with \`flowmeter sources set-key\``,
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
