import { styleText } from 'node:util';
import {
  generateEncryptionKeys,
  localDataDir,
  localEnvFile,
  readLocalEnv,
  writeLocalEnv,
} from './local-env.ts';
import { startLocalStack } from './stack.ts';

/**
 * `npm start`: the local Supabase-compatible stack, until Ctrl-C. With SUPABASE_URL and
 * SUPABASE_SERVICE_ROLE_KEY already in the environment nothing local starts.
 */
const DB_PORT = Number(process.env.FLOWMETER_LOCAL_DB_PORT ?? 54322);
const API_PORT = Number(process.env.FLOWMETER_LOCAL_API_PORT ?? 54321);

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
  await writeLocalEnv({
    ...stack,
    encryptionKeys: previous?.FLOWMETER_ENCRYPTION_KEYS ?? generateEncryptionKeys(),
  });

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
  console.log(
    `\nWritten to ${localEnvFile} (source it, or use it with --env-file). Ctrl-C stops.\n`,
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping PostgreSQL cleanly…`);
    await stack.stop();
    console.log('stopped.');
    process.exit(0);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void stop(signal));
}

main().catch((error: unknown) => {
  console.error(
    styleText('red', `npm start failed: ${error instanceof Error ? error.message : String(error)}`),
  );
  process.exit(1);
});
