import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { N8nEmulator } from './n8n-double.ts';

export interface DemoN8n {
  url: string;
  instance(slug: string, apiKey: string): N8nEmulator;
  close(): Promise<void>;
}

async function toRequest(req: IncomingMessage, origin: string): Promise<Request> {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value === 'string') headers.set(name, value);
  }
  return new Request(new URL(req.url ?? '/', origin), { method: req.method ?? 'GET', headers });
}

async function send(res: ServerResponse, response: Response): Promise<void> {
  res.writeHead(response.status, Object.fromEntries(response.headers.entries()));
  res.end(Buffer.from(await response.arrayBuffer()));
}

/**
 * n8n-compatible instances for the demo, one per tenant, on one loopback port:
 * http://127.0.0.1:<port>/<slug> is an n8n whose public API is /<slug>/api/v1/….
 */
export async function startDemoN8n(port = 0): Promise<DemoN8n> {
  const instances = new Map<string, N8nEmulator>();
  let origin = '';
  const server: Server = createServer((req, res) => {
    const slug = (req.url ?? '/').split('/')[1] ?? '';
    const instance = instances.get(slug);
    if (!instance) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"message":"Not Found"}');
      return;
    }
    toRequest(req, origin)
      .then((request) => instance.fetch(request))
      .then((response) => send(res, response))
      .catch(() => res.writeHead(500).end());
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: origin,
    instance(slug, apiKey) {
      const instance = new N8nEmulator({ baseUrl: `${origin}/${slug}`, apiKey });
      instances.set(slug, instance);
      return instance;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
