import { spawn } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseEnv } from 'node:util';
import { createClient } from '@supabase/supabase-js';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/local/project.ts';
import { freePort } from '../../src/local/stack.ts';

/**
 * `npm run demo` as a newcomer sees it: the whole pipeline on a fast clock. The console
 * must show executions collected, a run blocked at the free tenant's limit, an alert
 * created, and the meter events the reporter would send; the demo's sign-ins must work —
 * then stop cleanly on Ctrl-C.
 */
describe('npm start (whole pipeline)', () => {
  it('shows collection, a blocked run, alerts at 80 % and 100 %, and the reporter', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'flowmeter-demo-'));
    const child = spawn(
      process.execPath,
      ['src/local/start.ts', '--speed', '120', '--functions-port', String(await freePort())],
      {
        cwd: projectRoot,
        env: {
          ...process.env,
          SUPABASE_URL: '',
          SUPABASE_SERVICE_ROLE_KEY: '',
          FLOWMETER_LOCAL_DIR: dir,
          FLOWMETER_LOCAL_DB_PORT: String(await freePort()),
          FLOWMETER_LOCAL_API_PORT: String(await freePort()),
          FLOWMETER_LOCAL_DASHBOARD_PORT: String(await freePort()),
          FLOWMETER_LOCAL_N8N_PORT: String(await freePort()),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
        // As a terminal runs it: Ctrl-C reaches its whole process group at once.
        detached: true,
      },
    );
    // Waits on output events, not on a clock: a loaded machine takes longer, and only the
    // test's own timeout ends the wait.
    let output = '';
    const waiting = new Set<{ re: RegExp; found: () => void }>();
    const onData = (c: Buffer) => {
      output += c.toString();
      for (const w of waiting) if (w.re.test(output)) w.found();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    // 'close': the process has exited and all it wrote has been read.
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const printed = (re: RegExp) =>
      new Promise<void>((resolve, reject) => {
        if (re.test(output)) return resolve();
        const entry = {
          re,
          found: () => {
            waiting.delete(entry);
            resolve();
          },
        };
        waiting.add(entry);
        void exited.then(() =>
          reject(new Error(`npm start exited before printing ${re}:\n${output}`)),
        );
      });
    const expected = [
      /collect\s+3 sources ok, 0 failed: \+\d+ executions/,
      /usage\s+Acme \d+\/30/,
      /enforce\s+Acme \(free plan\): run BLOCKED \(402 limit_reached, 30\/30\)/,
      /alert\s+.* crossed 80 %/,
      // Reservations expire on the fast clock too, so the free tenant's collected usage
      // reaches its limit and it gets the 100 % alert.
      /alert\s+Acme.* crossed 100 %/,
      /report\s+dry run, no STRIPE_SECRET_KEY: would send meter events cus_demoGlobex \+\d+/,
    ];
    try {
      await Promise.all(expected.map(printed));
      expect(output).toMatch(
        /sign in\s*: acme@demo\.flowmeter\.test \/ \S+\s+\(Acme \(free plan\)\)/,
      );

      // The sign-ins written to local.env work with supabase-js, as the dashboard uses them.
      const local = parseEnv(await readFile(join(dir, 'local.env'), 'utf8')) as Record<
        string,
        string
      >;
      const signIn = (email: string | undefined, password: string | undefined) =>
        createClient(local.SUPABASE_URL as string, local.SUPABASE_ANON_KEY as string, {
          auth: { persistSession: false, autoRefreshToken: false },
        }).auth.signInWithPassword({ email: email ?? '', password: password ?? '' });
      const tenantUser = await signIn(
        local.FLOWMETER_DEMO_TENANT_EMAIL,
        local.FLOWMETER_DEMO_TENANT_PASSWORD,
      );
      expect(tenantUser.error).toBeNull();
      const operator = await signIn(
        local.FLOWMETER_DEMO_OPERATOR_EMAIL,
        local.FLOWMETER_DEMO_OPERATOR_PASSWORD,
      );
      expect(operator.data.user?.app_metadata).toMatchObject({ flowmeter_role: 'operator' });
    } finally {
      process.kill(-(child.pid as number), 'SIGINT');
    }
    expect(await exited).toBe(0);
    // The demo's calls cut as the servers go are the stop's doing: nothing is said of them.
    expect(output.slice(output.indexOf('SIGINT: stopping…'))).toBe('SIGINT: stopping…\nstopped.\n');
  }, 900_000);
});
