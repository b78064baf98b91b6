import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { startFunctionsServer } from '../../src/local/functions-server.ts';
import { freePort } from '../../src/local/stack.ts';

/** Command lines of the processes still serving functions on `port`. */
const servingOn = (port: number) =>
  execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes('functions:serve') && line.includes(`--port ${port}`));

describe('the local functions server', () => {
  it('says what it waits for, and leaves no process behind when it gives up', async () => {
    const port = await freePort();
    const waits: string[] = [];
    await expect(
      startFunctionsServer({
        port,
        env: {},
        idleTimeoutMs: 1,
        onProgress: (waitingFor) => waits.push(waitingFor),
      }),
    ).rejects.toThrow(
      /made no progress for 0 s \(the server never came up\).*FLOWMETER_LOCAL_FUNCTIONS_TIMEOUT_SECONDS/,
    );
    expect(waits[0]).toBe('the Netlify CLI to start');
    expect(servingOn(port)).toEqual([]);
  });
});
