import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { waitForDisconnect } from '../../src/local/stack.ts';

let server: Server | undefined;
afterEach(
  () => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())),
);

/** A server that resets every connection as it arrives, as PostgreSQL going down can. */
async function resettingServer(): Promise<string> {
  server = createServer((socket) => socket.resetAndDestroy());
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return `postgres://nobody:secret@127.0.0.1:${port}/postgres`;
}

describe('stopping the local stack', () => {
  it('has nothing to wait for when the server resets the connection as it shuts down', async () => {
    await expect(
      waitForDisconnect(await resettingServer(), ['authenticator']),
    ).resolves.toBeUndefined();
  });
});
