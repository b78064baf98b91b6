import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { signJwt } from '../../src/local/keys.ts';
import { stack, superuser } from '../support/stack.ts';

/**
 * The local PostgREST-compatible endpoint answers every body a 4xx (or a 2xx when the call
 * is valid), never a 5xx, as PostgREST does: generated JSON of every shape, wrong types,
 * huge numbers, deep nesting, duplicate keys, bytes that are not UTF-8, text PostgreSQL
 * cannot store, enormous bodies, wrong content types and bad JWTs of every kind. Each
 * property runs against the running endpoint and a real database.
 */

const FN = 'rpc_test_hostile_types';
const SERVICE_FN = 'rpc_test_hostile_service_only';
const PARAMS = `i integer default null, b bigint default null, t text default null,
  j jsonb default null, u uuid default null, ts timestamptz default null,
  flag boolean default null, n numeric default null, ids bigint[] default null,
  tags text[] default null`;
const PARAM_NAMES = ['i', 'b', 't', 'j', 'u', 'ts', 'flag', 'n', 'ids', 'tags'] as const;
const ECHO = `pg_catalog.jsonb_build_object('i', i, 'b', b, 't', t, 'j', j, 'u', u, 'ts', ts,
  'flag', flag, 'n', n, 'ids', ids, 'tags', tags)`;

beforeAll(async () => {
  await superuser().query(`
    create or replace function public.${FN}(${PARAMS}) returns jsonb language sql stable
      set search_path = '' as $$ select ${ECHO} $$;
    create or replace function public.${SERVICE_FN}(${PARAMS}) returns jsonb language sql stable
      set search_path = '' as $$ select ${ECHO} $$;
    revoke execute on function public.${FN} from public;
    grant execute on function public.${FN} to anon, authenticated, service_role;
    revoke execute on function public.${SERVICE_FN} from public, anon, authenticated;
    grant execute on function public.${SERVICE_FN} to service_role;
  `);
});

interface Call {
  fn?: string;
  body: string | Uint8Array;
  contentType?: string | null;
  authorization?: string | null;
}

async function call({ fn = FN, body, contentType, authorization }: Call) {
  const headers: Record<string, string> = { apikey: stack.anonKey };
  if (contentType !== null) headers['content-type'] = contentType ?? 'application/json';
  const auth = authorization === undefined ? `Bearer ${stack.serviceRoleKey}` : authorization;
  if (auth !== null) headers.authorization = auth;
  const response = await fetch(`${stack.supabaseUrl}/rest/v1/rpc/${fn}`, {
    method: 'POST',
    headers,
    body,
  });
  const text = await response.text();
  return { status: response.status, text };
}

/** The property every case shares: an answer, and never a server error. */
async function expectNoServerError(request: Call) {
  const { status, text } = await call(request);
  expect(status, `${status} ${text.slice(0, 300)}`).toBeLessThan(500);
  return { status, text };
}

const runs = { numRuns: 80 };

/** A JSON object of the function's parameters, each given a value of any JSON type. */
const argumentsOfAnyType = fc
  .dictionary(fc.constantFrom(...PARAM_NAMES), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 })
  .map((args) => JSON.stringify(args));

/** Number literals JavaScript cannot hold (it would turn them into Infinity or 0). */
const hugeNumber = fc.oneof(
  fc.constantFrom('1e400', '-1e400', '1e-400', '1E+99999', `0.${'0'.repeat(400)}1`),
  fc.integer({ min: 20, max: 5000 }).map((n) => '9'.repeat(n)),
  fc.bigInt({ min: 2n ** 63n, max: 2n ** 200n }).map(String),
);

/** `[[[…]]]` and `{"k":{"k":…}}`, up to deeper than PostgreSQL (or JSON.stringify) will follow. */
const deeplyNested = fc
  .tuple(fc.integer({ min: 500, max: 300_000 }), fc.boolean())
  .map(([depth, arrays]) => ({
    depth,
    json: arrays
      ? `${'['.repeat(depth)}1${']'.repeat(depth)}`
      : `${'{"k":'.repeat(depth)}1${'}'.repeat(depth)}`,
  }));

/** Escapes PostgreSQL cannot store as text or jsonb. */
const unstorableEscape = fc.constantFrom(
  '\\u0000',
  'a\\u0000b',
  '\\ud800',
  '\\udfff',
  '\\ud800\\u0041',
  '\\uDBFF',
);

/** Array literals for the bigint[] and text[] parameters, well formed or not. */
const arrayLiteral = fc.oneof(
  fc.integer({ min: 1, max: 12 }).map((d) => `${'{'.repeat(d)}1${'}'.repeat(d)}`),
  fc.constantFrom('{1,2', '1,2}', '{{1},2}', '{"a"}', '{NULL}', '[1:2]={1,2}', '[0:-1]={}', '{'),
  fc.string({ maxLength: 20 }),
);

describe('any JSON body: never a 5xx', () => {
  it('JSON of any shape (arrays, scalars, objects with any keys)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 4 }), async (value) => {
        await expectNoServerError({ body: JSON.stringify(value) });
      }),
      runs,
    );
  });

  it("the function's parameters with values of the wrong type", async () => {
    await fc.assert(
      fc.asyncProperty(argumentsOfAnyType, async (body) => {
        await expectNoServerError({ body });
      }),
      runs,
    );
  });

  it('numbers too large, too small or too long for JavaScript, in every numeric parameter', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('i', 'b', 'n', 'j', 't', 'flag'),
        hugeNumber,
        async (name, number) => {
          const { status, text } = await expectNoServerError({ body: `{"${name}": ${number}}` });
          // PostgREST hands the number to PostgreSQL as sent: numeric keeps every digit.
          if (name === 'n' && status === 200 && /^\d+$/.test(number)) {
            expect(text).toContain(`"n": ${number}`);
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('nesting thousands of levels deep, as a whole body or inside a jsonb argument', async () => {
    await fc.assert(
      fc.asyncProperty(deeplyNested, fc.boolean(), async (nested, asArgument) => {
        const { status } = await expectNoServerError({
          body: asArgument ? `{"j": ${nested.json}}` : nested.json,
        });
        // PostgreSQL follows about 10,000 levels with its default 2 MB stack, not 20,000.
        if (!asArgument || nested.depth >= 20_000) expect(status).toBeGreaterThanOrEqual(400);
      }),
      { numRuns: 30 },
    );
  });

  it('duplicate keys: the last one wins, as JSON.parse and PostgreSQL agree', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.constantFrom(...PARAM_NAMES), fc.jsonValue({ maxDepth: 2 })), {
          minLength: 2,
          maxLength: 8,
        }),
        async (pairs) => {
          const body = `{${pairs.map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(', ')}}`;
          await expectNoServerError({ body });
        },
      ),
      runs,
    );
    const { status, text } = await call({ body: '{"i": "x", "i": 2, "t": "a", "t": "b"}' });
    expect(status).toBe(200);
    expect(JSON.parse(text)).toMatchObject({ i: 2, t: 'b' });
  });

  it('text PostgreSQL cannot store (NUL, unpaired surrogates), in text, jsonb and array arguments', async () => {
    await fc.assert(
      fc.asyncProperty(
        unstorableEscape,
        fc.constantFrom('t', 'j', 'jkey', 'tags', 'u'),
        async (unstorable, where) => {
          const body =
            where === 'jkey'
              ? `{"j": {"${unstorable}": 1}}`
              : where === 'tags'
                ? `{"tags": ["${unstorable}"]}`
                : `{"${where}": "${unstorable}"}`;
          const { status } = await expectNoServerError({ body });
          expect(status).toBeGreaterThanOrEqual(400);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('array literals of any depth and shape for array parameters', async () => {
    await fc.assert(
      fc.asyncProperty(arrayLiteral, fc.constantFrom('ids', 'tags'), async (literal, name) => {
        await expectNoServerError({ body: JSON.stringify({ [name]: literal }) });
      }),
      runs,
    );
  });

  it('bytes that are not UTF-8 anywhere in the body: 400', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 8 }).filter((bytes) => {
          try {
            new TextDecoder('utf-8', { fatal: true }).decode(bytes);
            return false;
          } catch {
            return true;
          }
        }),
        async (bad) => {
          const body = Buffer.concat([Buffer.from('{"t": "'), bad, Buffer.from('"}')]);
          const { status, text } = await expectNoServerError({ body });
          expect(status).toBe(400);
          expect(JSON.parse(text)).toMatchObject({ code: 'PGRST102' });
        },
      ),
      { numRuns: 40 },
    );
  });

  it('an enormous body: 413 before it is read to the end', async () => {
    for (const size of [1024 * 1024 + 1, 8 * 1024 * 1024]) {
      const { status, text } = await expectNoServerError({
        body: `{"t": "${'x'.repeat(size)}"}`,
      });
      expect(status).toBe(413);
      expect(JSON.parse(text)).toMatchObject({ code: 'PGRST413' });
    }
  });

  it('any content type but JSON: 415', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.constantFrom(
            'text/plain',
            'application/x-www-form-urlencoded',
            'text/csv',
            'application/octet-stream',
            'multipart/form-data; boundary=x',
            'application/xml',
            'application/jsonx',
            'json',
          ),
          fc.stringMatching(/^[a-z]{1,10}\/[a-z.+-]{1,15}$/).filter((t) => !/json/.test(t)),
        ),
        async (contentType) => {
          const { status, text } = await expectNoServerError({ body: '{"i": 1}', contentType });
          expect(status).toBe(415);
          expect(JSON.parse(text)).toMatchObject({ code: 'PGRST107' });
        },
      ),
      { numRuns: 30 },
    );
    // Bytes, not a string: fetch would label a string text/plain.
    expect(
      (await call({ body: new TextEncoder().encode('{"i": 1}'), contentType: null })).status,
    ).toBe(200);
    expect(
      (await call({ body: '{"i": 1}', contentType: 'application/json; charset=utf-8' })).status,
    ).toBe(200);
  });
});

const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** Authorization headers with a token that must not be accepted. */
const badAuthorization = fc.oneof(
  fc
    .string({ unit: 'binary-ascii', maxLength: 60 })
    .map((s) => s.replace(/[^\x20-\x7e]/g, '').trim())
    // An empty Authorization header is no header: the request is anon's.
    .filter((s) => s !== ''),
  fc
    .string({ unit: 'binary-ascii', maxLength: 200 })
    .map((s) => `Bearer ${s.replace(/[^\x21-\x7e]/g, '')}`),
  fc
    .tuple(fc.base64String(), fc.base64String(), fc.base64String())
    .map((parts) => `Bearer ${parts.join('.')}`),
  fc
    .tuple(fc.jsonValue(), fc.jsonValue())
    .map(([header, payload]) => `Bearer ${base64url(header)}.${base64url(payload)}.`),
  fc.constantFrom('Bearer', 'Bearer ', 'Basic abc', 'bearer a.b', `Bearer ${'a'.repeat(9000)}`),
);

/** Correctly signed tokens whose claims are hostile: roles that do not exist or may not be assumed. */
const hostileRoleClaim = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.constantFrom(
    'postgres',
    'authenticator',
    'supabase_admin',
    'pg_read_all_data',
    'anon\u0000',
    '\u0000',
    'service_role"; select 1; --',
    "service_role'",
    'x'.repeat(500),
    '\ud800',
  ),
  fc.jsonValue(),
);

describe('bad JWTs of every kind: 401, or the call refused with a 4xx, never a 5xx', () => {
  it('malformed, unsigned, tampered or foreign tokens: 401', async () => {
    await fc.assert(
      fc.asyncProperty(badAuthorization, async (authorization) => {
        const { status } = await expectNoServerError({ body: '{"i": 1}', authorization });
        expect(status).toBe(401);
      }),
      runs,
    );
  });

  it('signed with the right secret, claiming any role', async () => {
    await fc.assert(
      fc.asyncProperty(hostileRoleClaim, fc.boolean(), async (role, serviceOnly) => {
        const token = await signJwt(stack.jwtSecret, { role });
        await expectNoServerError({
          fn: serviceOnly ? SERVICE_FN : FN,
          body: '{"i": 1}',
          authorization: `Bearer ${token}`,
        });
      }),
      runs,
    );
  });

  it('signed with the right secret, with claims of the wrong types', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(
          fc.constantFrom('exp', 'nbf', 'iat', 'aud', 'sub', 'role', 'iss', 'jti'),
          fc.jsonValue({ maxDepth: 2 }),
        ),
        async (claims) => {
          const token = `${base64url({ alg: 'HS256', typ: 'JWT' })}.${base64url(claims)}`;
          const signature = createHmac('sha256', stack.jwtSecret).update(token).digest('base64url');
          await expectNoServerError({
            body: '{"i": 1}',
            authorization: `Bearer ${token}.${signature}`,
          });
        },
      ),
      runs,
    );
  });
});
