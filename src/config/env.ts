/*
 * The environment, parsed once at start-up. Every variable is documented in .env.example;
 * a missing or malformed one stops start-up with a message naming it and its expected form.
 */

import { z } from 'zod';
import { parseKeyring } from '../crypto/keyring.ts';

type Env = Record<string, string | undefined>;

/** A string variable whose every error message says what a good value looks like. */
export const variable = (expected: string) =>
  z.string({
    error: (issue) =>
      issue.input === undefined ? `is required: ${expected}` : `must be ${expected}`,
  });

const jwtLike = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const SERVICE_KEY = 'the service_role JWT (eyJ…) or a secret API key (sb_secret_…)';
const PROJECT_URL =
  'the project URL, like https://<project-ref>.supabase.co or http://127.0.0.1:54321';
const KEYRING = 'one or more id:base64key pairs, e.g. k1:<32 random bytes in base64>';

/** A whole number from the environment, with its range and default in the message. */
export const count = (min: number, max: number, fallback: number, unit = '') =>
  z.coerce
    .number({ error: `must be a whole number from ${min} to ${max}${unit}` })
    .int({ error: `must be a whole number from ${min} to ${max}${unit}` })
    .min(min, { error: `must be at least ${min}${unit}` })
    .max(max, { error: `must be at most ${max}${unit}` })
    .default(fallback);

export const supabaseEnvSchema = z.object({
  SUPABASE_URL: variable(PROJECT_URL).pipe(
    z.url({ protocol: /^https?$/, error: `must be ${PROJECT_URL}` }),
  ),
  // Supabase's newer API keys are sb_secret_… (service) and sb_publishable_… (anon).
  SUPABASE_SERVICE_ROLE_KEY: variable(SERVICE_KEY).refine(
    (v) => jwtLike.test(v) || v.startsWith('sb_secret_'),
    { message: `must be ${SERVICE_KEY}` },
  ),
});

export const logEnvSchema = z.object({
  LOG_LEVEL: z
    .enum(['debug', 'info', 'warn', 'error'], { error: 'must be one of debug, info, warn, error' })
    .default('info'),
});

/**
 * The deadline of each database call a server function makes (the enforcement endpoint has
 * its own, ENFORCE_DB_TIMEOUT_MS): a hung database or PostgREST is cut after it and reads as
 * unreachable, so a scheduled run records its failure while it still has time and an
 * endpoint answers 503 instead of being stopped by the platform. At most 10 s, so that a
 * scheduled function can cut its work and still record it inside Netlify's 30 s.
 */
export const dbTimeoutEnvShape = {
  DB_TIMEOUT_MS: count(500, 10_000, 5000, ' ms'),
};

/** A server function's base: the project, the log level and the database deadline. */
export const serverEnvSchema = supabaseEnvSchema
  .extend(logEnvSchema.shape)
  .extend(dbTimeoutEnvShape);

export const envSchema = supabaseEnvSchema.extend(logEnvSchema.shape).extend({
  FLOWMETER_ENCRYPTION_KEYS: variable(KEYRING).transform((value, ctx) => {
    try {
      return parseKeyring(value);
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: (error as Error).message });
      return z.NEVER;
    }
  }),
});

export type Config = z.infer<typeof envSchema>;

/**
 * A claim answers at most the API's 1,000 rows (Supabase's Max rows, private.api_max_rows),
 * and Netlify takes at most 256 KB of background payload (1,000 leases are about 105 KB).
 */
export const MAX_SLICE_SOURCES = 1000;

const collectorEnvSchema = envSchema.extend(dbTimeoutEnvShape).extend({
  // A scheduled function runs at most 30 s: stop starting pages well before.
  COLLECTOR_BUDGET_SECONDS: count(5, 25, 18, ' seconds'),
  // Background functions run at most 15 minutes.
  COLLECTOR_BACKGROUND_BUDGET_SECONDS: count(30, 840, 780, ' seconds'),
  // Sources worked at once per invocation: against n8n answering in 100-300 ms, 16 keep
  // one invocation busy without waiting on the database.
  COLLECTOR_CONCURRENCY: count(1, 128, 16),
  COLLECTOR_LEASE_SECONDS: count(30, 1800, 120, ' seconds'),
  COLLECTOR_SLICE_SOURCES: count(10, MAX_SLICE_SOURCES, 1000),
  // n8n keeps executions 14 days by default; one unfinished longer is given up on.
  COLLECTOR_OPEN_MAX_AGE_HOURS: count(1, 24 * 90, 336, ' hours'),
  COLLECTOR_REVISIT_BATCH: count(1, 1000, 100),
  // Ids missing from n8n's list, fetched by id per source and run, this many at once.
  COLLECTOR_PROBE_BATCH: count(1, 1000, 1000),
  COLLECTOR_PROBE_CONCURRENCY: count(1, 64, 8),
  N8N_REQUEST_TIMEOUT_MS: count(1000, 60_000, 8000, ' ms'),
  EXECUTION_RETENTION_MONTHS: count(1, 120, 3, ' months'),
  // Hand-off of large backlogs to collect-usage-background; without it the next run resumes.
  FLOWMETER_INTERNAL_SECRET: variable(
    'a random string of at least 32 characters, e.g. openssl rand -hex 32',
  )
    .min(32, { error: 'must be at least 32 characters (openssl rand -hex 32)' })
    .optional(),
  // Set by Netlify to the site's main URL.
  URL: z.url({ error: 'must be the site URL, like https://flowmeter.netlify.app' }).optional(),
});

/** Netlify ends a scheduled function at 30 s. */
export const SCHEDULED_FUNCTION_LIMIT_MS = 30_000;
/** Netlify ends a background function at 15 minutes. */
export const BACKGROUND_FUNCTION_LIMIT_MS = 15 * 60_000;

/**
 * What a scheduled function keeps of its time after its work is cut: two database
 * deadlines, one to record what it finished last (a lease release, a report, a delivery),
 * one to record its run. The one rule behind every cut (collectionSettings,
 * reporterSettings, sendStartBy, reconcileDbTimeoutMs) and the check below.
 */
export const recordingReserveMs = (dbTimeoutMs: number) => 2 * dbTimeoutMs;

/**
 * After its budget (the variable `budget` names, in seconds; `unitMs` 1 for one in ms) a
 * scheduled run cuts what is still in flight two database deadlines before Netlify's limit
 * (collectionSettings, reporterSettings), then records what it finished and the function's
 * run, one deadline each: a combination that leaves no time between the budget and that
 * cut would be killed before it records. A sender's one-attempt timeout is such a budget
 * too (sendStartBy): at or past the limit, no send would ever start.
 */
export const requireRunEndInsideScheduledLimit =
  <B extends string>(budget: B, unitMs = 1000) =>
  (env: Record<B, number> & { DB_TIMEOUT_MS: number }, ctx: z.RefinementCtx): void => {
    const value = env[budget];
    const needed = value * unitMs + recordingReserveMs(env.DB_TIMEOUT_MS);
    if (needed < SCHEDULED_FUNCTION_LIMIT_MS) return;
    ctx.addIssue({
      code: 'custom',
      path: ['DB_TIMEOUT_MS'],
      message:
        `with ${budget}=${value}: ${budget} + ` +
        `2 × DB_TIMEOUT_MS is ${needed.toLocaleString('en-US')} ms, which must stay under ` +
        `the scheduled function's ${SCHEDULED_FUNCTION_LIMIT_MS.toLocaleString('en-US')} ms (Netlify's 30 s): ` +
        'lower either',
    });
  };

const checkedCollectorEnvSchema = collectorEnvSchema.superRefine(
  requireRunEndInsideScheduledLimit('COLLECTOR_BUDGET_SECONDS'),
);

export type CollectorConfig = z.infer<typeof checkedCollectorEnvSchema>;
export const loadCollectorConfig = (env: Env = process.env): CollectorConfig =>
  parseEnv(checkedCollectorEnvSchema, env);

export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(
      `Invalid environment:\n${problems.map((p) => `  - ${p}`).join('\n')}\nSee .env.example for every variable.`,
    );
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Blank means unset; Netlify's Supabase extension names the project URL SUPABASE_DATABASE_URL. */
function normalize(env: Env): Env {
  const normalized: Env = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value.trim() !== '') normalized[key] = value.trim();
  }
  if (!normalized.SUPABASE_URL && normalized.SUPABASE_DATABASE_URL?.startsWith('http')) {
    normalized.SUPABASE_URL = normalized.SUPABASE_DATABASE_URL;
  }
  return normalized;
}

/** Parses `env` with `schema`, throwing one ConfigError that names every bad variable. */
export function parseEnv<S extends z.ZodType>(schema: S, env: Env = process.env): z.infer<S> {
  const result = schema.safeParse(normalize(env));
  if (result.success) return result.data;
  throw new ConfigError(
    result.error.issues.map(
      (issue) => `${issue.path.join('.') || '(environment)'} ${issue.message}`,
    ),
  );
}

export const loadConfig = (env: Env = process.env): Config => parseEnv(envSchema, env);

const SECRET_LIST =
  'a comma-separated list of secrets of at least 32 characters (openssl rand -hex 32)';

/**
 * Shared secrets a caller may send, several at once so that one can be rotated: add the new
 * one, move the callers over, drop the old. Blanks around a comma are ignored.
 */
export const secretList = () =>
  variable(SECRET_LIST).transform((value, ctx) => {
    const secrets = value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (secrets.length === 0 || secrets.some((s) => s.length < 32)) {
      ctx.addIssue({ code: 'custom', message: `must be ${SECRET_LIST}` });
      return z.NEVER;
    }
    return secrets;
  });

/** The enforcement endpoint needs no encryption keys: it never touches upstream secrets. */
const enforceEnvSchema = supabaseEnvSchema.extend(logEnvSchema.shape).extend({
  // What workflow runners send as their bearer token.
  RUNNER_SECRETS: secretList(),
  ENFORCE_FAIL_MODE: z
    .enum(['open', 'closed'], { error: 'must be open (allow runs) or closed (refuse runs)' })
    .default('open'),
  // The decision's one database call; past it the database counts as unreachable and
  // ENFORCE_FAIL_MODE decides. A decision normally takes a few milliseconds.
  ENFORCE_DB_TIMEOUT_MS: count(100, 30_000, 5000, ' ms'),
  // Longer than a collection interval plus the longest run, so a reservation is released by
  // the collector rather than by expiry. A fraction is allowed for a demo whose clock runs
  // faster (`npm start -- --speed 60` divides it by 60).
  RESERVATION_TTL_MINUTES: z.coerce
    .number({ error: 'must be a number of minutes from 0.1 to 1440' })
    .min(0.1, { error: 'must be at least 0.1 minutes' })
    .max(24 * 60, { error: 'must be at most 1440 minutes' })
    .default(30),
});

export type EnforceConfig = z.infer<typeof enforceEnvSchema>;
export const loadEnforceConfig = (env: Env = process.env): EnforceConfig =>
  parseEnv(enforceEnvSchema, env);
