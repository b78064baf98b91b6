import { type ChildProcess, spawn } from 'node:child_process';
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

export async function startFunctionsServer(options: {
  port: number;
  env: Record<string, string | undefined>;
  onLog?: (line: string) => void;
  timeoutMs?: number;
}): Promise<FunctionsServer> {
  const bin = join(projectRoot, 'node_modules', '.bin', 'netlify');
  const child: ChildProcess = spawn(
    bin,
    ['functions:serve', '--offline', '--port', String(options.port)],
    {
      cwd: projectRoot,
      env: { ...process.env, ...options.env, NETLIFY_TELEMETRY_DISABLED: '1' } as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  // Never outlive the process that started it, however that process ends.
  const killChild = () => child.kill('SIGTERM');
  process.once('exit', killChild);
  let output = '';
  const collect = (chunk: Buffer) => {
    output += chunk.toString();
    for (const line of chunk.toString().split('\n')) if (line.trim()) options.onLog?.(line);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const url = `http://127.0.0.1:${options.port}`;
  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
  // Ready once the enforce route answers (405 to a GET).
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(
        `netlify functions:serve exited (${child.exitCode}):\n${output.slice(-2000)}`,
      );
    try {
      const response = await fetch(`${url}/api/v1/enforce`, { signal: AbortSignal.timeout(2000) });
      if (response.status === 405) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGTERM');
      throw new Error(`netlify functions:serve did not come up:\n${output.slice(-2000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return {
    url,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}
