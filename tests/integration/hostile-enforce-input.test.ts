import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { enforce } from '../../src/enforcement/enforce.ts';
import {
  activeReservations,
  enforceHandler,
  enforceRequest,
  runnerSecret,
  setCollectedUsage,
} from '../support/enforcement.ts';
import { createPlan, createTenant } from '../support/fixtures.ts';
import { serviceClient } from '../support/stack.ts';

/**
 * Hostile text in every field of an enforce request, against a hard-limit tenant at its
 * limit, in fail-open mode (the default): no such request is ever allowed, none is a 5xx,
 * and text that has no business in an identifier is a 400 naming the field before any SQL
 * runs. A second property sends the same text past the request schema, straight to the
 * database: PostgreSQL's refusals must not read as an outage either.
 */

type Field = 'tenant' | 'workflowId' | 'runRef';
const FIELDS: Field[] = ['tenant', 'workflowId', 'runRef'];

/** Characters the request schema refuses, each a class an attacker or a bug sends. */
const forbiddenCharacter = fc.oneof(
  fc.constant('\u0000'),
  fc.integer({ min: 0x01, max: 0x1f }).map((c) => String.fromCharCode(c)),
  fc.integer({ min: 0x7f, max: 0x9f }).map((c) => String.fromCharCode(c)),
  fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)),
  fc.constantFrom(
    '\u00ad', // soft hyphen
    '\u200b', // zero-width space
    '\u200d', // zero-width joiner
    '\u200e', // left-to-right mark
    '\u202e', // right-to-left override
    '\u2066', // left-to-right isolate
    '\ufeff', // byte-order mark
    '\u00a0', // no-break space
    '\u3000', // ideographic space
    '\u2028', // line separator
    '\u2029', // paragraph separator
    '\ue000', // private use
    '\u{10fffd}', // supplementary private use
    '\uffff', // noncharacter
    '\ud83d\u0041', // a high surrogate followed by a letter, not its pair
  ),
);

/** A real identifier with forbidden characters inside it: the near miss. */
const nearMiss = (real: string) =>
  fc
    .tuple(
      fc.integer({ min: 1, max: real.length - 1 }),
      fc.array(forbiddenCharacter, { minLength: 1, maxLength: 3 }),
    )
    // Kept apart, so that two surrogates drawn apart cannot pair into one valid character.
    .map(([at, bad]) => `${real.slice(0, at)}${bad.join('x')}${real.slice(at)}`);

/** Any UTF-16 code units at all, lone surrogates included: valid or not, never an allow. */
const anyCodeUnits = fc.string({
  unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
  minLength: 1,
  maxLength: 60,
});

/** Values of the wrong type, which JSON can carry. */
const notAString = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }),
  // A `length` no comparison can read: zod's length checks throw on it by themselves.
  fc
    .constantFrom('{"length":{"toString":""}}', '{"length":{"valueOf":1,"toString":[]}}')
    .map((json) => JSON.parse(json) as unknown),
);

let tenant: { id: string; external_ref: string };
const handler = enforceHandler({ failMode: 'open' });

beforeAll(async () => {
  const created = await createTenant((await createPlan({ included_executions: 2 })).id);
  tenant = { id: created.id, external_ref: created.external_ref as string };
  await setCollectedUsage(tenant.id, 2);
});

const validBody = () => ({ tenant: tenant.id, workflowId: 'wf-1', runRef: 'run-1' });
const realValue = (field: Field) =>
  ({ tenant: tenant.external_ref, workflowId: 'workflow-42', runRef: 'run-2026-12-01' })[field];

async function ask(body: Record<string, unknown>) {
  const response = await handler(enforceRequest(body));
  return {
    status: response.status,
    body: (await response.json()) as {
      allowed?: boolean;
      error?: { code: string; details?: Array<{ field: string; message: string }> };
    },
  };
}

/** The fields a 400 names, each once. */
const namedFields = (body: { error?: { details?: Array<{ field: string }> } }) => [
  ...new Set(body.error?.details?.map((d) => d.field)),
];

/** Asks with `field` set to each of `numRuns` values drawn from `values`, the rest valid. */
const everyValueOf = (
  field: Field,
  values: fc.Arbitrary<unknown>,
  numRuns: number,
  check: (answer: Awaited<ReturnType<typeof ask>>) => void,
) =>
  fc.assert(
    fc.asyncProperty(values, async (value) => check(await ask({ ...validBody(), [field]: value }))),
    { numRuns },
  );

describe('hostile text in the request is never allowed (fail-open mode, tenant at its limit)', () => {
  it('the tenant is at its hard limit: a valid request is refused with 402', async () => {
    expect((await ask(validBody())).status).toBe(402);
  });

  it.each(FIELDS)('%s with forbidden characters inside: 400 naming the field', async (field) => {
    await everyValueOf(field, nearMiss(realValue(field)), 60, ({ status, body }) => {
      expect(status).toBe(400);
      expect(body.error?.code).toBe('invalid_request');
      expect(namedFields(body)).toEqual([field]);
      expect(body.error?.details?.[0]?.message).toMatch(/found U\+[0-9A-F]{4,6} at position \d+/);
    });
    expect(await activeReservations(tenant.id)).toBe(0);
  });

  it.each(FIELDS)('%s of any UTF-16 code units: never 200, never 5xx', async (field) => {
    await everyValueOf(field, anyCodeUnits, 60, ({ status, body }) => {
      expect(status).not.toBe(200);
      expect(status).toBeLessThan(500);
      expect(body.allowed).not.toBe(true);
      if (status === 400) expect(namedFields(body)).toEqual([field]);
    });
    expect(await activeReservations(tenant.id)).toBe(0);
  });

  it.each(FIELDS)('%s of another JSON type: 400 naming the field', async (field) => {
    await everyValueOf(field, notAString, 30, ({ status, body }) => {
      expect(status).toBe(400);
      expect(namedFields(body)).toEqual([field]);
    });
  });

  it('a body whose bytes are not UTF-8 is a 400, not text with U+FFFD in it', async () => {
    const bytes = Buffer.concat([
      Buffer.from(`{"tenant":"${tenant.external_ref}`),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('"}'),
    ]);
    const response = await handler(
      new Request('https://flowmeter.test/api/v1/enforce', {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${runnerSecret}`,
        },
        body: bytes,
      }),
    );
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(
      /UTF-8/,
    );
  });
});

describe('past the request schema, PostgreSQL refusing hostile text is still no allow', () => {
  it.each(FIELDS)('%s sent straight to enforce_usage', async (field) => {
    const db = serviceClient();
    await fc.assert(
      fc.asyncProperty(fc.oneof(nearMiss(realValue(field)), anyCodeUnits), async (value) => {
        const outcome = await enforce(
          db,
          { ...validBody(), [field]: value },
          { reservationTtlSeconds: 1800, failMode: 'open' },
        );
        expect(outcome.failedOpen).toBeUndefined();
        if (outcome.ok) expect(outcome.value.allowed).toBe(false);
        else expect(['invalid_request', 'unknown_tenant']).toContain(outcome.error.code);
      }),
      { numRuns: 60 },
    );
    expect(await activeReservations(tenant.id)).toBe(0);
  });
});
