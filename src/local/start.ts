import { styleText } from 'node:util';
import { Command, InvalidArgumentError } from 'commander';
import pg from 'pg';
import { generatePassword } from '../accounts/ensure-user.ts';
import { parseKeyring } from '../crypto/keyring.ts';
import { createServiceClient } from '../db/client.ts';
import { startLocalDashboard } from './dashboard.ts';
import { startDemoN8n } from './demo/n8n-server.ts';
import { type RunnerEvent, startDemoRunner } from './demo/runner.ts';
import { seedDemo } from './demo/seed.ts';
import { seedDemoUsers } from './demo/users.ts';
import { startFunctionsServer } from './functions-server.ts';
import {
  generateEncryptionKeys,
  generateSecret,
  type LocalEnv,
  localDashboardDir,
  localDataDir,
  localEnvFile,
  readLocalEnv,
  writeLocalEnv,
} from './local-env.ts';
import { readSchedules, startScheduler } from './scheduler.ts';
import { startLocalStack } from './stack.ts';

/**
 * `npm start`: the whole pipeline on this machine. The local Supabase-compatible stack;
 * the Netlify functions served by the Netlify CLI; a scheduler firing the scheduled ones
 * on their cron schedules (--speed runs the clock faster); and, unless real sources are
 * configured or --no-demo is given, demo n8n instances with tenants whose runner asks the
 * enforcement endpoint before every run. With SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY
 * set, nothing local starts.
 */
const positive = (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
};
const options = new Command()
  .name('npm start --')
  .option(
    '--speed <factor>',
    'run the scheduler clock this many times faster (60: 10-minute schedules every 10 s)',
    positive,
    1,
  )
  .option('--no-demo', 'no demo tenants, n8n instances or runner')
  .option('--stack-only', 'only the local Supabase-compatible stack (database and RPC endpoint)')
  .option('--functions-port <port>', 'port of the Netlify functions server', positive, 8888)
  .parse()
  .opts<{ speed: number; demo: boolean; stackOnly?: boolean; functionsPort: number }>();

const DB_PORT = Number(process.env.FLOWMETER_LOCAL_DB_PORT ?? 54322);
const API_PORT = Number(process.env.FLOWMETER_LOCAL_API_PORT ?? 54321);
const DEMO_N8N_PORT = Number(process.env.FLOWMETER_LOCAL_N8N_PORT ?? 54330);
const DASHBOARD_PORT = Number(process.env.FLOWMETER_LOCAL_DASHBOARD_PORT ?? 54323);

const time = () => new Date().toISOString().slice(11, 19);
const say = (topic: string, text: string, color: Parameters<typeof styleText>[0] = 'reset') =>
  console.log(
    `${styleText('dim', time())} ${styleText('bold', topic.padEnd(8))} ${styleText(color, text)}`,
  );

/**
 * What a scheduled run did, read back from the database: locally the Netlify CLI answers a
 * scheduled function's invocation with its own text, not the function's body.
 */
async function describeRun(
  admin: pg.Client,
  name: string,
  since: Date,
): Promise<[string, Parameters<typeof styleText>[0]]> {
  switch (name) {
    case 'collect-usage': {
      const { rows } = await admin.query(
        `select sources_ok, sources_failed, pages, executions_ingested, billable_counted, errors
         from public.collector_runs where started_at >= $1 and trigger = 'schedule' order by started_at desc limit 1`,
        [since],
      );
      const run = rows[0];
      if (!run) return ['no run recorded', 'red'];
      const errors = (run.errors as Array<{ error: string }>).map((e) => e.error).join('; ');
      return [
        `${run.sources_ok} sources ok, ${run.sources_failed} failed: +${run.executions_ingested} executions (${run.billable_counted} billable) in ${run.pages} pages${errors ? ` — ${errors}` : ''}`,
        run.sources_failed > 0 ? 'red' : 'green',
      ];
    }
    case 'report-usage': {
      const { rows } = await admin.query(
        `select r.stripe_customer_id, r.value, r.status from public.meter_reports r
         where r.created_at >= $1 or r.sent_at >= $1 order by r.id`,
        [since],
      );
      if (rows.length === 0) return ['nothing new to report to Stripe', 'dim'];
      const line = rows.map((r) => `${r.stripe_customer_id} +${r.value} (${r.status})`).join(', ');
      const dry = rows.every((r) => r.status === 'pending');
      return [
        dry
          ? `dry run, no STRIPE_SECRET_KEY: would send meter events ${line}`
          : `meter events: ${line}`,
        dry ? 'yellow' : 'green',
      ];
    }
    case 'deliver-alerts': {
      const { rows } = await admin.query(
        `select count(*) filter (where status = 'delivered' and delivered_at >= $1)::int as delivered,
                count(*) filter (where status = 'failed')::int as failing
         from public.alert_deliveries`,
        [since],
      );
      return [`${rows[0].delivered} alert deliveries sent, ${rows[0].failing} failing`, 'dim'];
    }
    case 'reconcile-usage': {
      const { rows } = await admin.query(
        'select count(*)::int as n from public.reconciliation_findings where found_at >= $1',
        [since],
      );
      return [`${rows[0].n} reconciliation findings`, rows[0].n ? 'red' : 'green'];
    }
    default:
      return ['done', 'dim'];
  }
}

async function main(): Promise<void> {
  if (process.env.SUPABASE_URL && process.env.SUPABASE_SERVICE_ROLE_KEY) {
    console.log(
      `SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are set: using ${process.env.SUPABASE_URL}; no local stack started.`,
    );
    return;
  }
  const previous = await readLocalEnv();
  const started = Date.now();
  const stack = await startLocalStack({
    dataDir: localDataDir,
    dbPort: DB_PORT,
    apiPort: API_PORT,
    // Keep the keys stable across restarts so other shells keep working.
    ...(previous?.SUPABASE_JWT_SECRET ? { jwtSecret: previous.SUPABASE_JWT_SECRET } : {}),
    log: (line) => console.log(styleText('dim', `· ${line}`)),
  });
  const dashboard = await startLocalDashboard({
    ...stack,
    outDir: localDashboardDir,
    port: DASHBOARD_PORT,
    log: (line) => console.log(styleText('dim', `· ${line}`)),
  });
  const local: LocalEnv = {
    ...stack,
    dashboardUrl: dashboard.url,
    encryptionKeys: previous?.FLOWMETER_ENCRYPTION_KEYS ?? generateEncryptionKeys(),
    runnerSecret: previous?.RUNNER_SECRETS ?? generateSecret(),
    internalSecret: previous?.FLOWMETER_INTERNAL_SECRET ?? generateSecret(),
  };
  await writeLocalEnv(local);

  const stops: Array<() => unknown> = [];
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping…`);
    for (const fn of stops.reverse()) await fn();
    await dashboard.close();
    await stack.stop();
    console.log('stopped.');
    process.exit(0);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void stop(signal));

  const row = (label: string, value: string) =>
    console.log(`${styleText('bold', label.padStart(18))}: ${value}`);
  console.log(
    `\n${styleText('green', `flowmeter local stack started in ${((Date.now() - started) / 1000).toFixed(1)} s`)}\n`,
  );
  row('API URL', stack.supabaseUrl);
  row('RPC', `${stack.supabaseUrl}/rest/v1/rpc/<function>`);
  row('DB URL', stack.databaseUrl);
  row('JWT secret', stack.jwtSecret);
  row('anon key', stack.anonKey);
  row('service_role key', stack.serviceRoleKey);
  row('dashboard', `${dashboard.url}  (the tenant dashboard)`);

  if (!options.stackOnly) {
    const functionsUrl = `http://127.0.0.1:${options.functionsPort}`;
    const env = {
      SUPABASE_URL: stack.supabaseUrl,
      SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
      FLOWMETER_ENCRYPTION_KEYS: local.encryptionKeys,
      RUNNER_SECRETS: local.runnerSecret,
      FLOWMETER_INTERNAL_SECRET: local.internalSecret,
      // Locally the status endpoint takes the same secret as the background hand-off.
      OPERATOR_SECRETS: local.internalSecret,
      URL: functionsUrl,
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    };
    console.log(styleText('dim', '· starting the Netlify functions (netlify functions:serve)…'));
    const functions = await startFunctionsServer({
      port: options.functionsPort,
      env,
      onLog: (line) => {
        if (/error|fail/i.test(line) && !/Loaded function/.test(line))
          say('netlify', line.trim(), 'red');
      },
    });
    stops.push(() => functions.stop());
    row('enforce', `${functionsUrl}/api/v1/enforce  (Authorization: Bearer <RUNNER_SECRETS>)`);
    row('stripe webhook', `${functionsUrl}/api/v1/stripe/webhook`);
    row(
      'status',
      `${functionsUrl}/api/v1/status  (Authorization: Bearer <FLOWMETER_INTERNAL_SECRET>)`,
    );

    if (options.demo) {
      const db = createServiceClient({
        SUPABASE_URL: stack.supabaseUrl,
        SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
      });
      const n8n = await startDemoN8n(DEMO_N8N_PORT);
      stops.push(() => n8n.close());
      const tenants = await seedDemo({
        db,
        keyring: parseKeyring(local.encryptionKeys),
        n8n,
      });
      row('demo n8n', `${n8n.url}/<tenant>  (${tenants.map((t) => t.name).join(', ')})`);
      const signIns = await seedDemoUsers({
        db,
        tenants,
        // Kept across restarts, so a browser's saved sign-in keeps working.
        passwords: {
          tenant: previous?.FLOWMETER_DEMO_TENANT_PASSWORD ?? generatePassword(),
          operator: previous?.FLOWMETER_DEMO_OPERATOR_PASSWORD ?? generatePassword(),
        },
      });
      for (const user of signIns.tenants) {
        row('sign in', `${user.email} / ${user.password}  (${user.tenant})`);
      }
      row('operator', `${signIns.operator.email} / ${signIns.operator.password}`);
      const [firstTenant] = signIns.tenants;
      if (firstTenant) {
        await writeLocalEnv({
          ...local,
          demoSignIns: { tenant: firstTenant, operator: signIns.operator },
        });
      }
      stops.push(
        startDemoRunner({
          enforceUrl: `${functionsUrl}/api/v1/enforce`,
          runnerSecret: local.runnerSecret,
          tenants,
          speed: options.speed,
          onEvent: (event: RunnerEvent) => {
            if (event.type === 'blocked') {
              say(
                'enforce',
                `${event.tenant}: run BLOCKED (402 ${event.reason}, ${event.committed}/${event.limit})`,
                'red',
              );
            } else if (event.type === 'allowed-again')
              say('enforce', `${event.tenant}: runs allowed again`, 'green');
            else say('enforce', `${event.tenant}: ${event.message}`, 'red');
          },
        }),
      );
      stops.push(
        watchUsage(
          stack.databaseUrl,
          tenants.map((t) => t.externalRef),
        ),
      );
    }

    const schedules = await readSchedules();
    const admin = new pg.Client({ connectionString: stack.databaseUrl });
    admin.on('error', () => {});
    await admin.connect();
    stops.push(() => admin.end().catch(() => {}));
    stops.push(
      startScheduler({
        functionsUrl,
        functions: schedules,
        speed: options.speed,
        runAtStart: ['collect-usage'],
        onResult: (name, { status, body, ms }) => {
          const topic = name.replace(/-usage$/, '');
          if (status >= 400) {
            say(topic, `answered ${status}: ${JSON.stringify(body).slice(0, 300)}`, 'red');
            return;
          }
          void describeRun(admin, name, new Date(Date.now() - ms - 1000))
            .then(([text, color]) => {
              // Quiet runs of the frequent alert sender are not news.
              if (
                color !== 'dim' ||
                name !== 'deliver-alerts' ||
                !/^0 alert deliveries sent, 0/.test(text)
              ) {
                say(topic, `${text}  ${styleText('dim', `${ms} ms`)}`, color);
              }
            })
            .catch((error: unknown) => say(topic, String(error), 'red'));
        },
        onError: (name, error) => say(name, error.message, 'red'),
      }),
    );
    row(
      'scheduler',
      `${schedules.map((s) => `${s.name} (${s.schedule})`).join(', ')}${options.speed !== 1 ? `, clock ×${options.speed}` : ''}`,
    );
  }
  console.log(
    `\nWritten to ${localEnvFile} (source it, or use it with --env-file). Ctrl-C stops.\n`,
  );
}

/** Prints usage per demo tenant and each new alert, from the database, as it changes. */
function watchUsage(databaseUrl: string, refs: string[]): () => Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  client.on('error', () => {});
  let last = '';
  let lastAlert = 0;
  let timer: NodeJS.Timeout | undefined;
  const poll = async () => {
    const usage = await client.query<{
      name: string;
      billable: string;
      quota: string | null;
      reserved: string;
    }>(
      // As the CLI shows it: live reservations only, the trial quota while trialing.
      'select t.name, t.billable, t.quota, t.reserved from public.list_tenants($1) t order by t.name',
      [refs],
    );
    const line = usage.rows
      .map(
        (r) =>
          `${r.name.replace(/ \(.*/, '')} ${r.billable}${r.quota ? `/${r.quota}` : ''}${Number(r.reserved) ? ` (+${r.reserved} reserved)` : ''}`,
      )
      .join(' · ');
    // Reservations move with every run; print when collected usage moves.
    const collected = usage.rows.map((r) => r.billable).join(',');
    if (collected !== last) {
      last = collected;
      say('usage', line, 'cyan');
    }
    const alerts = await client.query<{
      id: string;
      name: string;
      threshold: number;
      used: string;
      quota: string;
    }>(
      `select a.id, t.name, a.threshold, a.used, a.quota from public.usage_alerts a join public.tenants t on t.id = a.tenant_id
       where t.external_ref = any($1) and a.id > $2 order by a.id`,
      [refs, lastAlert],
    );
    for (const a of alerts.rows) {
      lastAlert = Math.max(lastAlert, Number(a.id));
      say(
        'alert',
        `${a.name} crossed ${a.threshold} % (${a.used}/${a.quota}) — in-app alert created`,
        'yellow',
      );
    }
  };
  void client.connect().then(async () => {
    // Alerts from earlier runs are not news.
    const { rows } = await client.query<{ max: string | null }>(
      'select max(id) as max from public.usage_alerts',
    );
    lastAlert = Number(rows[0]?.max ?? 0);
    timer = setInterval(() => void poll().catch(() => {}), 1000);
  });
  return async () => {
    if (timer) clearInterval(timer);
    await client.end().catch(() => {});
  };
}

main().catch((error: unknown) => {
  console.error(
    styleText('red', `npm start failed: ${error instanceof Error ? error.message : String(error)}`),
  );
  process.exit(1);
});
