import { z } from 'zod';
import { parseKeyring } from '../crypto/keyring.ts';

/**
 * The environment, parsed once at start-up. Every variable is documented in .env.example;
 * a missing or malformed one stops start-up with a message naming it and its expected form.
 */

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

export const envSchema = supabaseEnvSchema.extend({
  FLOWMETER_ENCRYPTION_KEYS: variable(KEYRING).transform((value, ctx) => {
    try {
      return parseKeyring(value);
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: (error as Error).message });
      return z.NEVER;
    }
  }),
  LOG_LEVEL: z
    .enum(['debug', 'info', 'warn', 'error'], { error: 'must be one of debug, info, warn, error' })
    .default('info'),
});

export type Config = z.infer<typeof envSchema>;

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

type Env = Record<string, string | undefined>;

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
