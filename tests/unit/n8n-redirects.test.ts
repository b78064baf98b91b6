import { HttpResponse, http } from 'msw';
import { describe, expect, it } from 'vitest';
import { createN8nClient } from '../../src/n8n/client.ts';
import { useMockServer } from '../support/msw.ts';
import { failureOf } from '../support/n8n-failure.ts';

/** Redirects: the API key goes to n8n's own origin only, never to where a redirect points. */

const BASE_URL = 'https://acme.n8n.example';
const API_KEY = 'n8n_api_redirect_key';
const server = useMockServer();

const client = () =>
  createN8nClient({ baseUrl: BASE_URL, apiKey: API_KEY, retries: 0, timeoutMs: 5000 });

const page = { data: [], nextCursor: null };
const redirectTo = (location: string, status = 302) =>
  new HttpResponse(null, { status, headers: { location } });

/** Every request that reached a host, with the key it carried. */
function recordKeys() {
  const seen: Array<{ url: string; key: string | null }> = [];
  server.events.on('request:start', ({ request }) => {
    seen.push({ url: request.url, key: request.headers.get('x-n8n-api-key') });
  });
  return seen;
}

describe('redirects', () => {
  it.each([301, 302, 303, 307, 308])(
    'a %i to another origin is not followed: the key never leaves n8n',
    async (status) => {
      const seen = recordKeys();
      server.use(
        http.get(`${BASE_URL}/api/v1/executions`, () =>
          redirectTo('https://collector.attacker.example/steal', status),
        ),
        http.get('https://collector.attacker.example/*', () => HttpResponse.json(page)),
      );
      const error = await failureOf(client().listExecutions({ limit: 1 }));
      expect(error.kind).toBe('redirected');
      expect(error.retryable).toBe(false);
      expect(error.message).toContain(
        'redirected to another origin (https://collector.attacker.example)',
      );
      expect(seen.filter((r) => !r.url.startsWith(BASE_URL))).toEqual([]);
      server.events.removeAllListeners();
    },
  );

  it('a same-host redirect to another scheme or port is another origin too', async () => {
    server.use(
      http.get(`${BASE_URL}/api/v1/executions`, () =>
        redirectTo('http://acme.n8n.example/api/v1/executions'),
      ),
    );
    expect((await failureOf(client().listExecutions({ limit: 1 }))).kind).toBe('redirected');
  });

  it('a same-origin redirect (a proxy moving the path) is followed with the key', async () => {
    const seen = recordKeys();
    server.use(
      http.get(`${BASE_URL}/api/v1/executions`, () => redirectTo('/n8n/api/v1/executions?limit=1')),
      http.get(`${BASE_URL}/n8n/api/v1/executions`, ({ request }) =>
        request.headers.get('x-n8n-api-key') === API_KEY
          ? HttpResponse.json(page)
          : HttpResponse.json({ message: 'Unauthorized' }, { status: 401 }),
      ),
    );
    await expect(client().listExecutions({ limit: 1 })).resolves.toEqual(page);
    expect(seen.map((r) => r.key)).toEqual([API_KEY, API_KEY]);
    server.events.removeAllListeners();
  });

  it('a redirect loop on the same origin ends with an error', async () => {
    server.use(
      http.get(`${BASE_URL}/api/v1/executions`, () => redirectTo(`${BASE_URL}/api/v1/executions`)),
    );
    const error = await failureOf(client().listExecutions({ limit: 1 }));
    expect(error.kind).toBe('redirected');
    expect(error.message).toMatch(/redirected more than 3 times/);
  });

  it('getExecution refuses a redirect elsewhere as well', async () => {
    server.use(
      http.get(`${BASE_URL}/api/v1/executions/7`, () => redirectTo('https://elsewhere.example/7')),
    );
    expect((await failureOf(client().getExecution('7'))).kind).toBe('redirected');
  });
});
