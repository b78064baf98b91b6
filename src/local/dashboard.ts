/*
 * The dashboard (web/) locally: built with Vite, served as static files with a
 * `config.json` naming the local stack, so the same build works whatever ports the stack
 * got. Only the public anon key is served.
 */

import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { projectRoot } from './project.ts';

const dashboardSourceDir = join(projectRoot, 'web');
const dashboardBuildDir = join(dashboardSourceDir, 'dist');

/** Builds web/ into `outDir` (default web/dist, the folder Netlify publishes). */
export async function buildDashboard({
  outDir = dashboardBuildDir,
}: {
  outDir?: string;
} = {}): Promise<void> {
  // Vite picks libraries' production builds only when NODE_ENV says so (vitest sets "test").
  const nodeEnv = process.env.NODE_ENV;
  process.env.NODE_ENV = 'production';
  try {
    const { build } = await import('vite');
    await build({
      configFile: join(dashboardSourceDir, 'vite.config.ts'),
      mode: 'production',
      logLevel: 'warn',
      build: { outDir, emptyOutDir: true },
    });
  } finally {
    if (nodeEnv === undefined) delete process.env.NODE_ENV;
    else process.env.NODE_ENV = nodeEnv;
  }
}

export interface DashboardServer {
  url: string;
  close(): Promise<void>;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.map': 'application/json',
};

async function serveFile(root: string, pathname: string, res: ServerResponse): Promise<void> {
  let relative: string;
  try {
    relative = decodeURIComponent(pathname === '/' ? '/index.html' : pathname);
  } catch {
    res.writeHead(400).end('Bad path');
    return;
  }
  const file = resolve(root, `.${relative}`);
  if (file !== root && !file.startsWith(root + sep)) {
    res.writeHead(403).end('Forbidden');
    return;
  }
  try {
    if (!(await stat(file)).isFile())
      throw Object.assign(new Error('not a file'), { code: 'ENOENT' });
    const body = await readFile(file);
    res.writeHead(200, {
      'content-type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream',
      // Hashed assets never change; the page itself is always checked again.
      'cache-control': relative.startsWith('/assets/')
        ? 'public, max-age=31536000, immutable'
        : 'no-cache',
      'x-content-type-options': 'nosniff',
    });
    res.end(body);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not found');
  }
}

/** One request to the functions, passed on with its method, body and the headers they read. */
async function forward(req: IncomingMessage, res: ServerResponse, target: URL): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const headers = new Headers();
  for (const name of ['authorization', 'content-type']) {
    const value = req.headers[name];
    if (typeof value === 'string') headers.set(name, value);
  }
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  let answer: Response;
  try {
    answer = await fetch(target, {
      method: req.method ?? 'GET',
      headers,
      ...(hasBody ? { body: Buffer.concat(chunks) } : {}),
    });
  } catch {
    res
      .writeHead(502, { 'content-type': 'text/plain; charset=utf-8' })
      .end('The functions are not running');
    return;
  }
  res.writeHead(answer.status, {
    'content-type': answer.headers.get('content-type') ?? 'application/octet-stream',
    'cache-control': 'no-store',
  });
  res.end(Buffer.from(await answer.arrayBuffer()));
}

export async function startDashboardServer(options: {
  /** A built dashboard (buildDashboard). */
  root?: string;
  supabaseUrl: string;
  anonKey: string;
  /** 0 picks a free port. */
  port?: number;
  host?: string;
  /**
   * The Netlify functions: /api/ is forwarded there, so the page calls them on its own
   * origin, as on Netlify (where the site and its functions share one).
   */
  apiUrl?: string;
}): Promise<DashboardServer> {
  const root = resolve(options.root ?? dashboardBuildDir);
  const host = options.host ?? '127.0.0.1';
  const { apiUrl } = options;
  const config = JSON.stringify({
    supabaseUrl: options.supabaseUrl,
    supabaseAnonKey: options.anonKey,
    ...(apiUrl ? { invoicePreviewUrl: '/api/v1/invoice-preview' } : {}),
  });
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const { pathname, search } = new URL(req.url ?? '/', 'http://dashboard');
    if (apiUrl && pathname.startsWith('/api/')) {
      await forward(req, res, new URL(pathname + search, apiUrl));
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (pathname === '/config.json') {
      res
        .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
        .end(config);
      return;
    }
    await serveFile(root, pathname, res);
  };
  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((done, fail) => {
    server.once('error', fail);
    server.listen(options.port ?? 0, host, () => done());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    close: () => new Promise((done) => server.close(() => done())),
  };
}

/** What npm start runs: a fresh build of web/ into `outDir`, served against the local stack. */
export async function startLocalDashboard(options: {
  supabaseUrl: string;
  anonKey: string;
  outDir: string;
  port: number;
  /** The Netlify functions' URL; none with --stack-only. */
  apiUrl?: string;
  log: (line: string) => void;
}): Promise<DashboardServer> {
  options.log('building the dashboard (web/) with Vite');
  await buildDashboard({ outDir: options.outDir });
  const server = await startDashboardServer({
    root: options.outDir,
    supabaseUrl: options.supabaseUrl,
    anonKey: options.anonKey,
    port: options.port,
    ...(options.apiUrl ? { apiUrl: options.apiUrl } : {}),
  });
  options.log(`dashboard served on ${server.url}`);
  return server;
}
