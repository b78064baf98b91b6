import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseEnv } from 'node:util';
import { createClient } from '@supabase/supabase-js';
import { afterEach, describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/local/project.ts';
import { freePort } from '../../src/local/stack.ts';

/** `npm start` as a user runs it: a real process, its output, its files, Ctrl-C. */
const running: ChildProcess[] = [];
afterEach(() => {
  for (const child of running.splice(0)) child.kill('SIGKILL');
});

function start(env: Record<string, string>, options: { ownGroup?: boolean } = {}) {
  const child = spawn(process.execPath, ['src/local/start.ts', '--stack-only'], {
    cwd: projectRoot,
    env: { ...process.env, SUPABASE_URL: '', SUPABASE_SERVICE_ROLE_KEY: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // As a terminal runs it: the leader of its own process group.
    detached: options.ownGroup ?? false,
  });
  running.push(child);
  let output = '';
  child.stdout?.on('data', (c: Buffer) => {
    output += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    output += c.toString();
  });
  // 'close': the process has exited and all it wrote has been read.
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const waitFor = async (text: string) => {
    for (let i = 0; i < 600 && !output.includes(text); i++) {
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!output.includes(text)) throw new Error(`npm start never printed "${text}":\n${output}`);
  };
  return { child, exited, waitFor, output: () => output };
}

async function startStack() {
  const dir = await mkdtemp(join(tmpdir(), 'flowmeter-start-'));
  const env = {
    FLOWMETER_LOCAL_DIR: dir,
    FLOWMETER_LOCAL_DB_PORT: String(await freePort()),
    FLOWMETER_LOCAL_API_PORT: String(await freePort()),
    FLOWMETER_LOCAL_DASHBOARD_PORT: String(await freePort()),
  };
  return { dir, env };
}

/** Command lines of the processes on this machine that mention `text` (a data folder). */
const processesMentioning = (text: string) =>
  execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes(text));

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A first start runs initdb on the data folder for a few seconds: wait until it is running. */
async function whileInitdbRuns(dir: string): Promise<void> {
  const pgdata = `--pgdata=${join(dir, 'db')}`;
  while (!processesMentioning(pgdata).some((line) => line.includes('initdb'))) await pause(20);
}

describe('npm start', () => {
  it('serves the local stack, writes local.env, and stops cleanly on Ctrl-C; keys survive a restart', async () => {
    const { dir, env } = await startStack();
    const first = start(env);
    await first.waitFor('Ctrl-C stops');
    for (const label of ['API URL', 'DB URL', 'JWT secret', 'anon key', 'service_role key']) {
      expect(first.output()).toContain(label);
    }

    const file = join(dir, 'local.env');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const local = parseEnv(await readFile(file, 'utf8')) as Record<string, string>;
    expect(Object.keys(local).sort()).toEqual([
      'DATABASE_URL',
      'FLOWMETER_DASHBOARD_URL',
      'FLOWMETER_ENCRYPTION_KEYS',
      'FLOWMETER_INTERNAL_SECRET',
      'RUNNER_SECRETS',
      'SUPABASE_ANON_KEY',
      'SUPABASE_JWT_SECRET',
      'SUPABASE_SERVICE_ROLE_KEY',
      'SUPABASE_URL',
    ]);

    const service = createClient(
      local.SUPABASE_URL as string,
      local.SUPABASE_SERVICE_ROLE_KEY as string,
    );
    const plan = await service.rpc('set_plan', {
      id: 'starter',
      name: 'Starter',
      included_executions: 100,
    });
    expect(plan.error).toBeNull();
    expect(plan.data).toMatchObject({ id: 'starter', included_executions: 100 });

    const anon = createClient(local.SUPABASE_URL as string, local.SUPABASE_ANON_KEY as string);
    const refused = await anon.rpc('set_plan', { id: 'hacked', name: 'Hacked' });
    expect(refused.status).toBe(401);
    expect(refused.error).toEqual({
      code: '42501',
      message: 'permission denied for function set_plan',
      details: null,
      hint: null,
    });

    expect(local.FLOWMETER_DASHBOARD_URL).toBe(
      `http://127.0.0.1:${env.FLOWMETER_LOCAL_DASHBOARD_PORT}`,
    );
    expect(first.output()).toContain(local.FLOWMETER_DASHBOARD_URL);
    const page = await fetch(local.FLOWMETER_DASHBOARD_URL as string);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<flowmeter-dashboard>');
    // The page finds the local stack, with the public key only.
    const config = await fetch(`${local.FLOWMETER_DASHBOARD_URL}/config.json`);
    expect(await config.json()).toEqual({
      supabaseUrl: local.SUPABASE_URL,
      supabaseAnonKey: local.SUPABASE_ANON_KEY,
    });

    first.child.kill('SIGINT');
    expect({ code: await first.exited, output: first.output() }).toMatchObject({ code: 0 });
    expect(first.output()).toContain('stopped.');

    const second = start(env);
    await second.waitFor('Ctrl-C stops');
    const again = parseEnv(await readFile(file, 'utf8')) as Record<string, string>;
    expect(again.SUPABASE_SERVICE_ROLE_KEY).toBe(local.SUPABASE_SERVICE_ROLE_KEY);
    expect(again.FLOWMETER_ENCRYPTION_KEYS).toBe(local.FLOWMETER_ENCRYPTION_KEYS);
    const kept = await createClient(
      again.SUPABASE_URL as string,
      again.SUPABASE_SERVICE_ROLE_KEY as string,
    ).rpc('set_plan', { id: 'starter', name: 'Starter', included_executions: 200 });
    expect(kept.data).toMatchObject({ id: 'starter', included_executions: 200 });
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 120_000);

  it('stops cleanly on SIGTERM to its whole process group while it is still starting', async () => {
    const { dir, env } = await startStack();
    const run = start(env, { ownGroup: true });
    await run.waitFor('·');
    process.kill(-(run.child.pid as number), 'SIGTERM');
    expect(await run.exited).toBe(0);
    expect(run.output()).toContain('stopped.');
    expect(run.output()).not.toMatch(/\n\s+at /);
    // Anything it started may take a moment to go (the test's timeout bounds the wait); what
    // it must not do is leave it running, which the tests below pin down while initdb runs.
    while (processesMentioning(dir).length > 0) await pause(100);
  }, 120_000);

  it.each(['SIGINT', 'SIGTERM'] as const)(
    'stops without an error on %s to its whole process group once it has started',
    async (signal) => {
      // PostgreSQL, in the same group, gets the signal too: shutting down (SIGTERM) or gone
      // already (SIGINT) when the stop reaches it. That is the stop going as planned, neither
      // an error to print nor an exit to wait for, which would end the process mid-stop.
      const { dir, env } = await startStack();
      const run = start(env, { ownGroup: true });
      await run.waitFor('Ctrl-C stops');
      process.kill(-(run.child.pid as number), signal);
      expect(await run.exited).toBe(0);
      expect(run.output()).toContain('stopped.');
      expect(run.output()).not.toMatch(/while stopping|npm start failed|\n\s+at /);
      while (processesMentioning(dir).length > 0) await pause(100);
    },
    120_000,
  );

  it('waits for a running initdb to end when its process group is sent SIGTERM, and leaves nothing running', async () => {
    const { dir, env } = await startStack();
    const run = start(env, { ownGroup: true });
    await whileInitdbRuns(dir);
    process.kill(-(run.child.pid as number), 'SIGTERM');
    expect(await run.exited).toBe(0);
    expect(run.output()).toContain('stopped.');
    expect(run.output()).not.toMatch(/npm start failed|\n\s+at /);
    expect(processesMentioning(dir)).toEqual([]);
  }, 120_000);

  it('waits for a running initdb to end when only it is sent SIGTERM, starts nothing more, and leaves nothing running', async () => {
    const { dir, env } = await startStack();
    const run = start(env);
    await whileInitdbRuns(dir);
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
    expect(run.output()).toContain('stopped.');
    expect(run.output()).not.toMatch(/npm start failed|\n\s+at /);
    expect(run.output()).not.toContain('applying migrations');
    expect(processesMentioning(dir)).toEqual([]);
  }, 120_000);

  it('starts nothing local when SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are set', async () => {
    const { dir, env } = await startStack();
    const run = start({
      ...env,
      SUPABASE_URL: 'https://example-project.supabase.co',
      SUPABASE_SERVICE_ROLE_KEY: 'sb_secret_example',
    });
    expect(await run.exited).toBe(0);
    expect(run.output()).toMatch(/no local stack started/);
    await expect(stat(join(dir, 'local.env'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
