/*
 * Argument parsers for commander, each a zod schema whose message says what a good value
 * looks like. Commander reports a failure as "option '--x <v>' argument 'y' is invalid.
 * <message>" and the CLI exits 2 before anything is read or written.
 */

import { InvalidArgumentError, Option } from 'commander';
import { z } from 'zod';
import { identifierCharacters } from '../enforcement/schema.ts';
import { normalizeBaseUrl, SourceUrlError } from '../n8n/client.ts';

export function parser<T>(schema: z.ZodType<T>): (value: string) => T {
  return (value) => {
    const result = schema.safeParse(value);
    if (!result.success) throw new InvalidArgumentError(result.error.issues[0]?.message ?? '');
    return result.data;
  };
}

/** For options given several times (`--tenant a --tenant b`). */
export function repeatable<T>(schema: z.ZodType<T>): (value: string, previous?: T[]) => T[] {
  const parse = parser(schema);
  return (value, previous = []) => [...previous, parse(value)];
}

const matching = (pattern: RegExp, expected: string) =>
  z.string().regex(pattern, { error: `must be ${expected}` });

export const wholeNumber = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .regex(/^\d+$/, { error: `must be a whole number from ${min} to ${max}` })
    .transform(Number)
    .refine((n) => n >= min && n <= max, { error: `must be a whole number from ${min} to ${max}` });

/**
 * Up to 200 characters, trimmed, in the characters an identifier may hold (what
 * /api/v1/enforce accepts as a tenant, and what the CLI's tables may print).
 */
const identifier = (empty = 'must not be empty', tooLong = 'must be at most 200 characters') =>
  identifierCharacters(z.string().trim().min(1, { error: empty }).max(200, { error: tooLong }));

const TENANT_EXPECTED = 'must be a tenant id or external reference (see `flowmeter tenants list`)';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const schemas = {
  /** An operator's answer to a question about what Stripe shows. */
  yesNo: z.enum(['yes', 'no'], { error: 'must be yes or no' }).transform((v) => v === 'yes'),
  /** A UTC calendar month. */
  month: z
    .string()
    .regex(/^\d{4}-(0[1-9]|1[0-2])$/, { error: 'must be a month like 2026-11 (YYYY-MM)' }),
  planId: matching(
    /^[a-z0-9][a-z0-9_-]{0,62}$/,
    'a plan id: lowercase letters, digits, - and _, at most 63 characters (e.g. pro)',
  ),
  /**
   * A display name, in the characters an identifier may hold: a control character would
   * reach every table the CLI prints (an escape sequence repaints the operator's terminal,
   * a newline breaks the table), and NUL is text PostgreSQL cannot store.
   */
  name: identifier(),
  /** Stripe's unit_amount_decimal: minor units (cents), up to 6 decimals. */
  overagePrice: matching(
    /^\d{1,14}(\.\d{1,6})?$/,
    'a price in the currency’s minor unit (cents), up to 6 decimals, e.g. 0.2',
  ).transform(Number),
  currency: matching(/^[A-Za-z]{3}$/, 'a three-letter ISO currency code, e.g. usd').transform((c) =>
    c.toLowerCase(),
  ),
  thresholds: z
    .string()
    .transform((s) => s.split(',').map((x) => x.trim()))
    .pipe(
      z
        .array(wholeNumber(1, 1000), {
          error: 'must be percentages from 1 to 1000, comma-separated, e.g. 80,95,100',
        })
        .min(1),
    )
    .transform((list) => [...new Set(list)].sort((a, b) => a - b)),
  graceDays: wholeNumber(0, 90),
  meterEventName: matching(
    /^[A-Za-z0-9_.:-]{1,100}$/,
    "the Billing Meter's event name: letters, digits, _ . : -, e.g. n8n_executions",
  ),
  meterId: matching(/^mtr_[A-Za-z0-9_]+$/, 'a Stripe meter id (mtr_…)'),
  stripePrice: matching(/^price_[A-Za-z0-9_]+$/, 'a Stripe price id (price_…)'),
  stripeCustomer: matching(/^cus_[A-Za-z0-9_]+$/, 'a Stripe customer id (cus_…)'),
  /** What /api/v1/enforce accepts as a tenant, so every stored reference can be enforced. */
  externalRef: identifier(),
  /** A tenant's id or external reference, in the characters /api/v1/enforce accepts. */
  tenant: identifier(TENANT_EXPECTED, TENANT_EXPECTED),
  email: z
    .email({ error: 'must be an e-mail address, like ada@example.com' })
    .max(255, { error: 'must be at most 255 characters' })
    .transform((e) => e.toLowerCase()),
  /** Only from standard input, so a password never lands in the shell history. */
  passwordFromStdin: z.literal('-', {
    error: 'must be - (the password is read from standard input, never from the command line)',
  }),
  sourceId: matching(UUID, 'a source id (a UUID, see `flowmeter sources list`)').transform((s) =>
    s.toLowerCase(),
  ),
  /** An n8n instance root; /api/v1 and trailing slashes are dropped. */
  n8nUrl: z
    .url({
      protocol: /^https?$/,
      error: "must be the n8n instance's URL, like https://acme.app.n8n.cloud",
    })
    .transform((url, ctx) => {
      try {
        return normalizeBaseUrl(url);
      } catch (error) {
        if (!(error instanceof SourceUrlError)) throw error;
        ctx.addIssue({ code: 'custom', message: error.message });
        return z.NEVER;
      }
    })
    .refine((url) => /^https?:\/\/[^/\s?#]+(\/[^\s?#]*[^/\s?#])?$/.test(url), {
      error: "must be the n8n instance's URL without query or fragment",
    }),
  /** `-` reads it from standard input, so it stays out of the shell history. */
  apiKey: z
    .string()
    .trim()
    .min(1, { error: 'must be the n8n API key, or - to read it from standard input' }),
  projectId: z
    .string()
    .trim()
    .min(1, { error: 'must be an n8n project id' })
    .max(200, { error: 'must be at most 200 characters' }),
  /** A day (UTC midnight) or an ISO 8601 date-time, not in the future. */
  since: z
    .string()
    .regex(/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/, {
      error: 'must be a date like 2026-11-01 or an ISO 8601 date-time',
    })
    .transform((s) => new Date(/^\d{4}-\d{2}-\d{2}$/.test(s) ? `${s}T00:00:00Z` : s))
    .refine((d) => !Number.isNaN(d.getTime()), {
      error: 'must be a date like 2026-11-01 or an ISO 8601 date-time',
    })
    .refine((d) => d.getTime() <= Date.now(), { error: 'must not be in the future' }),
};

// The options several commands take, spelled once.

/** The repeatable `--tenant` filter of report, reconcile, sources list and status. */
export const tenantFilterOption = (note = '') =>
  new Option(
    '--tenant <tenant>',
    `only this tenant (id or external reference; repeatable)${note}`,
  ).argParser(repeatable(schemas.tenant));

/** The tenant a command acts on; with `only`, the one tenant a command may be narrowed to. */
export const tenantOption = (kind: 'required' | 'only' = 'required') =>
  kind === 'required'
    ? new Option('--tenant <tenant>', 'tenant id or external reference')
        .argParser(parser(schemas.tenant))
        .makeOptionMandatory()
    : new Option('--tenant <tenant>', 'only this tenant (id or external reference)').argParser(
        parser(schemas.tenant),
      );

/** The address of the user a command acts on, e.g. `the operator's`. */
export const emailOption = (whose: string) =>
  new Option('--email <address>', `${whose} e-mail address`)
    .argParser(parser(schemas.email))
    .makeOptionMandatory();

/** A whole number from `min` to `max`, its help ending with the bounds and the default. */
export const boundedOption = (
  flags: string,
  description: string,
  [min, max]: [number, number],
  fallback: number,
) =>
  new Option(flags, `${description} (${min}-${max}, default ${fallback})`)
    .argParser(parser(wholeNumber(min, max)))
    .default(fallback);
