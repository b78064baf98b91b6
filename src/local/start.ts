import { rm } from 'node:fs/promises';
import { styleText } from 'node:util';
import { Command, InvalidArgumentError } from 'commander';
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
import { describeRun, latestRun } from './run-reports.ts';
import { readSchedules, startScheduler } from './scheduler.ts';
import { startLocalStack } from './stack.ts';
import { watchUsage } from './usage-watch.ts';

const positive = (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
};
const options = new Command()
  .name('npm start --')
  .option(
    '--speed <factor>',
    'run the clock this many times faster: schedules, the demo runner and reservation expiry (60: 10-minute schedules every 10 s)',
    positive,
    1,
  )
  .option('--no-demo', 'no demo tenants, n8n instances or runner')
  .option('--stack-only', 'only the local Supabase-compatible stack (database and RPC endpoint)')
  .option(
    '--fresh',
    'delete the kept database first (its tenants, usage and sign-ins) and build it anew from the migrations',
  )
  .option(
    '--functions-port <port>',
    'port of the Netlify functions server',
    positive,
    Number(process.env.FLOWMETER_LOCAL_FUNCTIONS_PORT ?? 8888),
  )
  .addHelpText(
    'after',
    `
Environment (ports and folders of the local stack):
  FLOWMETER_LOCAL_DB_PORT       PostgreSQL (default 54322)
  FLOWMETER_LOCAL_API_PORT      the RPC and Auth endpoint, SUPABASE_URL (default 54321)
  FLOWMETER_LOCAL_DASHBOARD_PORT
                                the tenant dashboard (default 54323)
  FLOWMETER_LOCAL_N8N_PORT      the demo's n8n instances (default 54330)
  FLOWMETER_LOCAL_FUNCTIONS_PORT
                                the Netlify functions (default 8888; --functions-port wins)
  FLOWMETER_LOCAL_DIR           data and local.env (default .flowmeter)
  FLOWMETER_LOCAL_FUNCTIONS_TIMEOUT_SECONDS
                                give up on the functions server after this long without
                                progress in bundling (default 120)
With SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY set, nothing local starts.`,
  )
  .parse()
  .opts<{
    speed: number;
    demo: boolean;
    stackOnly?: boolean;
    fresh?: boolean;
    functionsPort: number;
  }>();

const DB_PORT = Number(process.env.FLOWMETER_LOCAL_DB_PORT ?? 54322);
const API_PORT = Number(process.env.FLOWMETER_LOCAL_API_PORT ?? 54321);
const DEMO_N8N_PORT = Number(process.env.FLOWMETER_LOCAL_N8N_PORT ?? 54330);
const FUNCTIONS_TIMEOUT_SECONDS = Number(
  process.env.FLOWMETER_LOCAL_FUNCTIONS_TIMEOUT_SECONDS ?? 120,
);
const DASHBOARD_PORT = Number(process.env.FLOWMETER_LOCAL_DASHBOARD_PORT ?? 54323);

const time = () => new Date().toISOString().slice(11, 19);
/**
 * One event line of a running part. Silent once stopping: what the parts report then (a call
 * cut as the servers go, each having had the signal too) is the stop's doing, not news.
 */
const say = (topic: string, text: string, color: Parameters<typeof styleText>[0] = 'reset') => {
  if (stopping) return;
  console.log(
    `${styleText('dim', time())} ${styleText('bold', topic.padEnd(8))} ${styleText(color, text)}`,
  );
};

/**
 * What has started, stopped in reverse order. Installed before anything starts, so Ctrl-C
 * (or SIGTERM to the process group) at any point, or a failure to start, stops what has
 * started without a stack trace.
 */
const stops: Array<() => unknown> = [];
let stopping = false;
async function stopAll(reason: string, exitCode: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    console.log(`\n${reason}: stopping…`);
    for (const fn of stops.reverse()) {
      try {
        await fn();
      } catch (error) {
        console.log(styleText('dim', `· while stopping: ${(error as Error).message}`));
      }
    }
    console.log('stopped.');
  }
  process.exit(exitCode);
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => void stopAll(signal, 0));
}

/**
 * `npm start`: the whole pipeline on this machine. The local Supabase-compatible stack;
 * the Netlify functions served by the Netlify CLI; a scheduler firing the scheduled ones
 * on their cron schedules (--speed runs the clock faster); and, unless real sources are
 * configured or --no-demo is given, demo n8n instances with tenants whose runner asks the
 * enforcement endpoint before every run. With SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY
 * set, nothing local starts.
 */
async function main(): Promise<void> {
  if (process.env.SUPABASE_URL && process.env.SUPABASE_SERVICE_ROLE_KEY) {
    console.log(
      `SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are set: using ${process.env.SUPABASE_URL}; no local stack started.`,
    );
    return;
  }
  if (options.fresh) {
    console.log(styleText('dim', `· --fresh: deleting ${localDataDir}`));
    await rm(localDataDir, { recursive: true, force: true });
  }
  const previous = await readLocalEnv();
  const started = Date.now();
  const abandon = new AbortController();
  const starting = startLocalStack({
    dataDir: localDataDir,
    freshFlag: '--fresh',
    dbPort: DB_PORT,
    apiPort: API_PORT,
    // Keep the keys stable across restarts so other shells keep working.
    ...(previous?.SUPABASE_JWT_SECRET ? { jwtSecret: previous.SUPABASE_JWT_SECRET } : {}),
    log: (line) => console.log(styleText('dim', `· ${line}`)),
    signal: abandon.signal,
  });
  // A stop while the stack is still starting waits for it: initdb and PostgreSQL are
  // children of this process, and exiting first would leave them running on the data folder.
  stops.push(async () => {
    abandon.abort();
    await (await starting.catch(() => undefined))?.stop();
  });
  const stack = await starting;
  if (stopping) return;
  const dashboard = await startLocalDashboard({
    ...stack,
    outDir: localDashboardDir,
    port: DASHBOARD_PORT,
    ...(options.stackOnly ? {} : { apiUrl: `http://127.0.0.1:${options.functionsPort}` }),
    log: (line) => console.log(styleText('dim', `· ${line}`)),
  });
  stops.push(() => dashboard.close());
  if (stopping) return;
  const local: LocalEnv = {
    ...stack,
    dashboardUrl: dashboard.url,
    encryptionKeys: previous?.FLOWMETER_ENCRYPTION_KEYS ?? generateEncryptionKeys(),
    runnerSecret: previous?.RUNNER_SECRETS ?? generateSecret(),
    internalSecret: previous?.FLOWMETER_INTERNAL_SECRET ?? generateSecret(),
  };
  await writeLocalEnv(local);

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
      // invoice-preview checks, as the signed-in user, that they belong to the tenant.
      SUPABASE_ANON_KEY: stack.anonKey,
      FLOWMETER_ENCRYPTION_KEYS: local.encryptionKeys,
      RUNNER_SECRETS: local.runnerSecret,
      FLOWMETER_INTERNAL_SECRET: local.internalSecret,
      // Locally the status endpoint takes the same secret as the background hand-off.
      OPERATOR_SECRETS: local.internalSecret,
      URL: functionsUrl,
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
      // Webhook receivers under test usually listen on this machine, over http.
      WEBHOOK_MODE: process.env.WEBHOOK_MODE ?? 'local',
      // The scheduler's clock runs --speed times faster, so reservations must expire as much
      // sooner: a run whose reservation the collector does not release (a manual run, not
      // billable) would otherwise hold the free tenant below 100 % for 30 real minutes.
      RESERVATION_TTL_MINUTES: String(
        Math.max(0.1, Number(process.env.RESERVATION_TTL_MINUTES ?? 30) / options.speed),
      ),
    };
    console.log(styleText('dim', '· starting the Netlify functions (netlify functions:serve)…'));
    const functions = await startFunctionsServer({
      port: options.functionsPort,
      env,
      idleTimeoutMs: FUNCTIONS_TIMEOUT_SECONDS * 1000,
      onProgress: (waitingFor) => console.log(styleText('dim', `· waiting for ${waitingFor}`)),
      onLog: (line) => {
        if (/error|fail/i.test(line) && !/Loaded function/.test(line))
          say('netlify', line.trim(), 'red');
      },
    });
    stops.push(() => functions.stop());
    if (stopping) return;
    // Each endpoint with the variable it checks; locally the values are in local.env.
    row(
      'enforce',
      `${functionsUrl}/api/v1/enforce  (Authorization: Bearer <RUNNER_SECRETS>; local.env has it)`,
    );
    row(
      'stripe webhook',
      `${functionsUrl}/api/v1/stripe/webhook  (Stripe-Signature made with STRIPE_WEBHOOK_SECRET${process.env.STRIPE_WEBHOOK_SECRET ? '' : ', not set: answers 500 until it is'})`,
    );
    row(
      'status',
      `${functionsUrl}/api/v1/status  (Authorization: Bearer <OPERATOR_SECRETS>; locally FLOWMETER_INTERNAL_SECRET from local.env)`,
    );

    const db = createServiceClient({
      SUPABASE_URL: stack.supabaseUrl,
      SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
    });
    if (options.demo) {
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
          db,
          tenants.map((t) => t.externalRef),
          {
            usage: (line) => say('usage', line, 'cyan'),
            alert: (a) =>
              say(
                'alert',
                `${a.tenant} crossed ${a.threshold} % (${a.used}/${a.quota}) — in-app alert created`,
                'yellow',
              ),
          },
        ),
      );
    }

    const schedules = await readSchedules();
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
          void latestRun(db, name)
            .then((run) => describeRun(name, run))
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

main().catch((error: unknown) => {
  // Once stopping, a part failing to start is the stop's doing (the same SIGTERM reached
  // initdb, or the start was abandoned), and the stop under way decides the exit code.
  if (stopping) return;
  console.error(
    styleText('red', `npm start failed: ${error instanceof Error ? error.message : String(error)}`),
  );
  void stopAll('failed', 1);
});
