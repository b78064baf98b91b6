import { Writable } from 'node:stream';
import fc from 'fast-check';
import { HttpResponse, http } from 'msw';
import { describe, expect, it } from 'vitest';
import { parser, schemas } from '../../src/cli/arguments.ts';
import { EXIT, runCli } from '../../src/cli/main.ts';
import {
  CREDENTIALS_IN_URL,
  createN8nClient,
  N8nApiError,
  normalizeBaseUrl,
  SourceUrlError,
} from '../../src/n8n/client.ts';
import { useMockServer } from '../support/msw.ts';

/**
 * Credentials in a source URL are refused (the API key is the credential), and no error
 * text carries the key, even when the upstream echoes it back.
 */

const server = useMockServer();

const userinfo = fc.tuple(
  fc.stringMatching(/^[A-Za-z0-9._~-]{1,12}$/),
  fc.option(fc.stringMatching(/^[A-Za-z0-9._~!$&'()*+,;=-]{1,16}$/), { nil: undefined }),
);

describe('a source URL with credentials', () => {
  it('is refused, whatever the user and password, with a message that does not repeat them', () => {
    fc.assert(
      fc.property(userinfo, ([user, password]) => {
        const raw = `https://${user}${password === undefined ? '' : `:${password}`}@acme.n8n.example/`;
        let refused: unknown;
        try {
          normalizeBaseUrl(raw);
        } catch (error) {
          refused = error;
        }
        expect(refused).toBeInstanceOf(SourceUrlError);
        // One fixed message, so nothing of the URL can reach a log through it.
        expect((refused as Error).message).toBe(CREDENTIALS_IN_URL);
      }),
    );
  });

  it('is refused by the CLI argument parser as a usage error, not a crash', () => {
    expect(() => parser(schemas.n8nUrl)('https://admin:hunter22@acme.n8n.example')).toThrow(
      /user name or password/,
    );
  });

  it('is refused by `flowmeter sources add` (exit 2) without repeating the password', async () => {
    const err: string[] = [];
    const code = await runCli(
      [
        'sources',
        'add',
        '--tenant',
        'acme',
        '--url',
        'https://admin:hunter22@acme.n8n.example',
        '--api-key',
        'k',
      ],
      {
        out: () => {},
        err: (t) => err.push(t),
        stdout: new Writable({ write: (_chunk, _encoding, done) => done() }),
        env: {},
      },
    );
    expect(code).toBe(EXIT.usage);
    expect(err.join('\n')).toMatch(/user name or password/);
    expect(err.join('\n')).not.toContain('hunter22');
  });

  it('without credentials is accepted and kept without them', () => {
    expect(normalizeBaseUrl('https://acme.n8n.example/api/v1/')).toBe('https://acme.n8n.example');
  });
});

describe('error texts', () => {
  const BASE_URL = 'https://echo.n8n.example';
  const API_KEY = 'n8n_api_secret_value_1234';
  const client = () =>
    createN8nClient({ baseUrl: BASE_URL, apiKey: API_KEY, retries: 0, timeoutMs: 5000 });

  it.each([
    ['an error body', 500, { message: `upstream saw X-N8N-API-KEY: ${API_KEY}` }],
    ['a body that is not JSON', 200, `<html>debug: key=${API_KEY}</html>`],
    ['a 400 message', 400, { message: `bad header ${API_KEY}` }],
  ] as const)(
    'never carry the API key when the upstream echoes it in %s',
    async (_, status, body) => {
      server.use(
        http.get(`${BASE_URL}/api/v1/executions`, () =>
          typeof body === 'string'
            ? new HttpResponse(body, { status })
            : HttpResponse.json(body, { status }),
        ),
      );
      const error = await client()
        .listExecutions({ limit: 1 })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(N8nApiError);
      expect((error as Error).message).not.toContain(API_KEY);
      expect((error as Error).message).toContain('[redacted]');
    },
  );
});
