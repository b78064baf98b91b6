import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from 'commander';
import { projectRoot } from '../src/local/project.ts';
import type { LocalStackInfo } from '../src/local/stack.ts';

/** What the benchmarks share: argument parsing, the stack in a child process, results. */
export const positive = (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new InvalidArgumentError('must be a positive whole number');
  return n;
};

/**
 * The local stack in a child process (stack-process.ts), as PostgREST runs apart from the
 * functions in production; stop() ends it.
 */
export async function startStackProcess(): Promise<
  LocalStackInfo & { pid: number; stop(): Promise<void> }
> {
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL('./stack-process.ts', import.meta.url))],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const [line] = (await once(createInterface({ input: child.stdout as Readable }), 'line')) as [
    string,
  ];
  return {
    ...(JSON.parse(line) as LocalStackInfo),
    pid: child.pid as number,
    stop: async () => {
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

/** Writes bench/results/<name>-<time>.json and says where. */
export async function writeResults(name: string, at: string, results: unknown): Promise<void> {
  await mkdir(`${projectRoot}bench/results`, { recursive: true });
  const file = `${projectRoot}bench/results/${name}-${at.replace(/[:.]/g, '-')}.json`;
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\nwrote ${file}`);
}
