import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatabaseTimeout, rpcFetch, withDeadline } from '../../src/db/fetch.ts';

/** A real HTTP server on a loopback port: rpcFetch talks to sockets, not to fetch. */
let server: Server;
let base: string;
const seen: Array<{
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}> = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      if (req.url === '/empty') {
        res.writeHead(204, { 'x-kind': 'empty' }).end();
      } else if (req.url === '/slow') {
        setTimeout(() => res.writeHead(200).end('late'), 2_000).unref();
      } else if (req.url === '/error') {
        res.writeHead(409, { 'content-type': 'application/json' }).end('{"code":"23505"}');
      } else {
        res
          .writeHead(200, {
            'content-type': 'application/json; charset=utf-8',
            'set-cookie': ['a=1', 'b=2'],
            'content-range': '0-0/1',
          })
          .end(JSON.stringify({ echo: body, method: req.method }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe('rpcFetch', () => {
  it('sends method, headers and a string body, and answers like fetch', async () => {
    const response = await rpcFetch(`${base}/rest/v1/rpc/f`, {
      method: 'POST',
      headers: new Headers({ authorization: 'Bearer k', 'content-type': 'application/json' }),
      body: '{"a":1}',
    });
    expect(response).toBeInstanceOf(Response);
    expect(response.status).toBe(200);
    expect(response.ok).toBe(true);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(response.headers.get('content-range')).toBe('0-0/1');
    expect(response.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    expect(await response.json()).toEqual({ echo: '{"a":1}', method: 'POST' });
    const request = seen.at(-1);
    expect(request?.headers.authorization).toBe('Bearer k');
    expect(request?.url).toBe('/rest/v1/rpc/f');
  });

  it('accepts headers as a plain object and a URL as input, and defaults to GET', async () => {
    const response = await rpcFetch(new URL(`${base}/q?x=1`), { headers: { 'x-one': '1' } });
    expect(await response.json()).toEqual({ echo: '', method: 'GET' });
    expect(seen.at(-1)?.headers['x-one']).toBe('1');
    expect(seen.at(-1)?.url).toBe('/q?x=1');
  });

  it('passes error statuses through with their body, and has no body on a 204', async () => {
    const failed = await rpcFetch(`${base}/error`, { method: 'POST', body: '{}' });
    expect(failed.status).toBe(409);
    expect(failed.ok).toBe(false);
    expect(await failed.json()).toEqual({ code: '23505' });

    const empty = await rpcFetch(`${base}/empty`, { method: 'POST' });
    expect(empty.status).toBe(204);
    expect(empty.body).toBeNull();
    expect(empty.headers.get('x-kind')).toBe('empty');
  });

  it('rejects like fetch when nothing listens', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const failure = await rpcFetch(`http://127.0.0.1:${port}/x`).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(TypeError);
    expect((failure as TypeError).message).toBe('fetch failed');
    expect((failure as TypeError).cause).toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('stops on an aborted signal', async () => {
    const controller = new AbortController();
    const pending = rpcFetch(`${base}/slow`, { signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('hands anything but a string body or a URL to the global fetch', async () => {
    const viaRequest = await rpcFetch(new Request(`${base}/r`, { method: 'POST', body: 'req' }));
    expect(await viaRequest.json()).toEqual({ echo: 'req', method: 'POST' });
    const viaBytes = await rpcFetch(`${base}/b`, {
      method: 'POST',
      body: new TextEncoder().encode('bytes'),
    });
    expect(await viaBytes.json()).toEqual({ echo: 'bytes', method: 'POST' });
  });
});

describe('withDeadline', () => {
  it('cuts a request that gets no answer in time, with a TimeoutError naming the deadline', async () => {
    const failure = await withDeadline(rpcFetch, 50)(`${base}/slow`, { method: 'POST' }).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(DatabaseTimeout);
    expect(failure).toMatchObject({
      name: 'TimeoutError',
      message: 'no answer from the database within 50 ms',
    });
  });

  it('cuts a transport that ignores the signal too', async () => {
    const deaf: typeof fetch = () => new Promise<Response>(() => {});
    await expect(withDeadline(deaf, 20)(`${base}/x`)).rejects.toBeInstanceOf(DatabaseTimeout);
  });

  it('passes answers in time through, and still honours the caller’s own signal', async () => {
    const response = await withDeadline(rpcFetch, 5000)(`${base}/ok`, {
      method: 'POST',
      body: '1',
    });
    expect(await response.json()).toEqual({ echo: '1', method: 'POST' });
    const controller = new AbortController();
    const pending = withDeadline(rpcFetch, 5000)(`${base}/slow`, { signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
  });
});
