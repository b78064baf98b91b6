import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DashboardServer, startDashboardServer } from '../../src/local/dashboard.ts';

/**
 * The local dashboard server beside the Netlify functions (npm start): /api/ is forwarded to
 * the functions, so the page calls them on its own origin as on Netlify, and config.json
 * names the invoice-preview function only then.
 */
let root: string;
let functions: ReturnType<typeof createServer>;
let functionsUrl: string;
const received: Array<{ method?: string; url?: string; authorization?: string; body: string }> = [];

const bodyOf = async (req: IncomingMessage) => {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text;
};

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'flowmeter-dashboard-'));
  await writeFile(join(root, 'index.html'), '<!doctype html><title>flowmeter</title>');
  functions = createServer(async (req, res) => {
    received.push({
      method: req.method,
      url: req.url,
      authorization: req.headers.authorization,
      body: await bodyOf(req),
    });
    res
      .writeHead(404, { 'content-type': 'application/json' })
      .end('{"error":{"code":"not_found"}}');
  });
  await new Promise<void>((done) => functions.listen(0, '127.0.0.1', done));
  functionsUrl = `http://127.0.0.1:${(functions.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((done) => functions.close(done));
  await rm(root, { recursive: true, force: true });
});

const start = (apiUrl?: string): Promise<DashboardServer> =>
  startDashboardServer({
    root,
    supabaseUrl: 'http://127.0.0.1:54321',
    anonKey: 'anon',
    ...(apiUrl ? { apiUrl } : {}),
  });

describe('the local dashboard server', () => {
  it('forwards /api/ to the functions with the method, the bearer token and the body', async () => {
    const server = await start(functionsUrl);
    try {
      const config = await (await fetch(`${server.url}/config.json`)).json();
      expect(config).toEqual({
        supabaseUrl: 'http://127.0.0.1:54321',
        supabaseAnonKey: 'anon',
        invoicePreviewUrl: '/api/v1/invoice-preview',
      });
      const answer = await fetch(`${server.url}/api/v1/invoice-preview?x=1`, {
        method: 'POST',
        headers: { authorization: 'Bearer user-jwt', 'content-type': 'application/json' },
        body: '{"tenant_id":"t"}',
      });
      expect(answer.status).toBe(404);
      expect(await answer.json()).toEqual({ error: { code: 'not_found' } });
      expect(received.at(-1)).toEqual({
        method: 'POST',
        url: '/api/v1/invoice-preview?x=1',
        authorization: 'Bearer user-jwt',
        body: '{"tenant_id":"t"}',
      });
    } finally {
      await server.close();
    }
  });

  it('without the functions, names none and refuses what is not a page', async () => {
    const server = await start();
    try {
      expect(await (await fetch(`${server.url}/config.json`)).json()).not.toHaveProperty(
        'invoicePreviewUrl',
      );
      const answer = await fetch(`${server.url}/api/v1/invoice-preview`, { method: 'POST' });
      expect(answer.status).toBe(405);
    } finally {
      await server.close();
    }
  });

  it('answers 502 when the functions are not running', async () => {
    const server = await start('http://127.0.0.1:1');
    try {
      const answer = await fetch(`${server.url}/api/v1/invoice-preview`, { method: 'POST' });
      expect(answer.status).toBe(502);
    } finally {
      await server.close();
    }
  });
});
