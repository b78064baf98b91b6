import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';

/** Runs the CLI with its stdout read by nobody, as `flowmeter … | head` leaves it. */
async function runWithClosedStdout(args: string[]) {
  const child = spawn(process.execPath, ['bin/flowmeter.js', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Closed before the CLI has even started, so every write it makes meets EPIPE.
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stderr };
}

describe('the CLI when its reader goes away', () => {
  it('ends quietly on EPIPE, with no stack trace', async () => {
    for (const args of [['--help'], ['plans', '--help']]) {
      const { code, stderr } = await runWithClosedStdout(args);
      expect(stderr).toBe('');
      expect(code).toBe(0);
    }
  });
});
