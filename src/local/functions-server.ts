import { type ChildProcess, spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { projectRoot } from './project.ts';

/**
 * The Netlify functions, served by the Netlify CLI as Netlify would run them
 * (`netlify functions:serve --offline`): same bundling, same routes (`config.path`), the
 * scheduled ones invocable at /.netlify/functions/<name>.
 */
export interface FunctionsServer {
  url: string;
  stop(): Promise<void>;
}

/** The functions the Netlify CLI bundles: one per file in netlify/functions. */
async function functionNames(): Promise<string[]> {
  const files = await readdir(join(projectRoot, 'netlify', 'functions'));
  return files.filter((f) => /\.m?[jt]s$/.test(f)).map((f) => f.replace(/\.m?[jt]s$/, ''));
}

/** Stops the CLI and everything it started (its own process group), then waits for it. */
async function stopGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(-(child.pid as number), name);
    } catch {
      // the group is gone already
    }
  };
  signal('SIGTERM');
  const timer = setTimeout(() => signal('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/**
 * Starts the CLI and waits until every function is bundled and the enforce route answers.
 * Bundling takes from seconds to minutes with the machine's load, so there is no fixed
 * deadline: the wait fails only after `idleTimeoutMs` without progress (a function
 * loaded, the server up). `onProgress` says what it is waiting for. The CLI runs in its
 * own process group, stopped as a whole on failure, on stop() and when this process exits.
 */
export async function startFunctionsServer(options: {
  port: number;
  env: Record<string, string | undefined>;
  onLog?: (line: string) => void;
  onProgress?: (waitingFor: string) => void;
  idleTimeoutMs?: number;
}): Promise<FunctionsServer> {
  const expected = await functionNames();
  const bin = join(projectRoot, 'node_modules', '.bin', 'netlify');
  const child: ChildProcess = spawn(
    bin,
    ['functions:serve', '--offline', '--port', String(options.port)],
    {
      cwd: projectRoot,
      env: { ...process.env, ...options.env, NETLIFY_TELEMETRY_DISABLED: '1' } as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own group: Ctrl-C reaches this process only, which stops the CLI in order, and
      // the esbuild and function workers the CLI starts stop with it.
      detached: true,
    },
  );
  const killOnExit = () => {
    if (child.pid && child.exitCode === null) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  };
  process.once('exit', killOnExit);

  const idleTimeoutMs = options.idleTimeoutMs ?? 120_000;
  let lastProgress = Date.now();
  let serverUp = false;
  const loaded = new Set<string>();
  let output = '';
  const progress = (waitingFor: string) => {
    lastProgress = Date.now();
    options.onProgress?.(waitingFor);
  };
  const collect = (chunk: Buffer) => {
    output += chunk.toString();
    for (const line of chunk.toString().split('\n')) {
      if (!line.trim()) continue;
      options.onLog?.(line);
      if (/dev server ready/i.test(line)) {
        serverUp = true;
        progress(`the functions to bundle (${loaded.size}/${expected.length} loaded)`);
      }
      const name = /Loaded function (\S+)/.exec(line)?.[1];
      if (name && !loaded.has(name)) {
        loaded.add(name);
        progress(
          loaded.size < expected.length
            ? `the functions to bundle (${loaded.size}/${expected.length} loaded, last ${name})`
            : 'the enforce route to answer',
        );
      }
    }
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const url = `http://127.0.0.1:${options.port}`;
  progress('the Netlify CLI to start');

  const fail = async (message: string) => {
    await stopGroup(child);
    process.removeListener('exit', killOnExit);
    throw new Error(`${message}:\n${output.slice(-2000)}`);
  };
  // Ready once every function is loaded and the enforce route answers (405 to a GET).
  for (;;) {
    if (child.exitCode !== null) return fail(`netlify functions:serve exited (${child.exitCode})`);
    if (serverUp && expected.every((n) => loaded.has(n))) {
      try {
        const response = await fetch(`${url}/api/v1/enforce`, {
          signal: AbortSignal.timeout(5000),
        });
        if (response.status === 405) break;
      } catch {
        // not answering yet
      }
    }
    if (Date.now() - lastProgress > idleTimeoutMs) {
      const missing = expected.filter((n) => !loaded.has(n));
      return fail(
        `netlify functions:serve made no progress for ${Math.round(idleTimeoutMs / 1000)} s (${serverUp ? (missing.length ? `not loaded: ${missing.join(', ')}` : 'the enforce route does not answer') : 'the server never came up'}); on a slow machine raise FLOWMETER_LOCAL_FUNCTIONS_TIMEOUT_SECONDS`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return {
    url,
    stop: async () => {
      await stopGroup(child);
      process.removeListener('exit', killOnExit);
    },
  };
}
