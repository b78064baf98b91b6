import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { reconcileDbTimeoutMs, reporterSettings } from '../../src/billing/from-config.ts';
import { collectionSettings } from '../../src/collector/from-config.ts';
import { loadAlertsConfig } from '../../src/config/alerts-env.ts';
import { loadStripeWebhookConfig } from '../../src/config/billing-env.ts';
import {
  ConfigError,
  loadCollectorConfig,
  loadConfig,
  loadEnforceConfig,
} from '../../src/config/env.ts';
import {
  loadInvoicePreviewEndpointConfig,
  loadReconcileConfig,
  loadReporterConfig,
  loadStatusConfig,
} from '../../src/config/reporter-env.ts';
import { loadWebhooksConfig } from '../../src/config/webhooks-env.ts';
import { scheduledRecordBy, sendStartBy } from '../../src/ops/scheduled-run.ts';
import { webhookDependencies } from '../../src/webhooks/from-config.ts';

const key = () => randomBytes(32).toString('base64');
const serviceKey = 'eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2ln';
const valid = {
  SUPABASE_URL: 'https://abcd.supabase.co',
  SUPABASE_SERVICE_ROLE_KEY: serviceKey,
  FLOWMETER_ENCRYPTION_KEYS: `k1:${key()}`,
};

function problemsOf(env: Record<string, string | undefined>): readonly string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('parses a complete environment and applies defaults', () => {
    const config = loadConfig(valid);
    expect(config.SUPABASE_URL).toBe('https://abcd.supabase.co');
    expect(config.LOG_LEVEL).toBe('info');
    expect(config.FLOWMETER_ENCRYPTION_KEYS.activeKeyId).toBe('k1');
  });

  it('names every missing variable at once, with the form it should take', () => {
    const problems = problemsOf({});
    expect(problems).toHaveLength(3);
    expect(problems.find((p) => p.startsWith('SUPABASE_URL'))).toMatch(
      /required.*https:\/\/<project-ref>\.supabase\.co/,
    );
    expect(problems.find((p) => p.startsWith('SUPABASE_SERVICE_ROLE_KEY'))).toMatch(
      /required.*service_role JWT/,
    );
    expect(problems.find((p) => p.startsWith('FLOWMETER_ENCRYPTION_KEYS'))).toMatch(
      /required.*id:base64key/,
    );
  });

  it('rejects malformed values with the variable name', () => {
    const problems = problemsOf({
      ...valid,
      SUPABASE_URL: 'abcd.supabase.co',
      SUPABASE_SERVICE_ROLE_KEY: 'not-a-key',
      LOG_LEVEL: 'loud',
    });
    expect(problems.map((p) => p.split(' ')[0]).sort()).toEqual([
      'LOG_LEVEL',
      'SUPABASE_SERVICE_ROLE_KEY',
      'SUPABASE_URL',
    ]);
    expect(problems.join('\n')).toMatch(/LOG_LEVEL must be one of debug, info, warn, error/);
  });

  it('treats blank values as missing', () => {
    expect(problemsOf({ ...valid, SUPABASE_URL: '   ' })[0]).toMatch(/^SUPABASE_URL is required/);
  });

  it("accepts Netlify's Supabase extension variable for the project URL", () => {
    const { SUPABASE_URL: _, ...rest } = valid;
    const config = loadConfig({ ...rest, SUPABASE_DATABASE_URL: 'https://xyz.supabase.co' });
    expect(config.SUPABASE_URL).toBe('https://xyz.supabase.co');
  });

  it('accepts the new sb_secret_ API keys', () => {
    expect(
      loadConfig({ ...valid, SUPABASE_SERVICE_ROLE_KEY: 'sb_secret_abc123' })
        .SUPABASE_SERVICE_ROLE_KEY,
    ).toBe('sb_secret_abc123');
  });

  it.each([
    ['short key', `k1:${randomBytes(16).toString('base64')}`, /32 random bytes/],
    ['no id', key(), /must look like k1:<base64 key>/],
    ['duplicate id', `k1:${key()},k1:${key()}`, /appears twice/],
  ])('explains a bad encryption keyring (%s)', (_, value, message) => {
    expect(problemsOf({ ...valid, FLOWMETER_ENCRYPTION_KEYS: value }).join('\n')).toMatch(message);
  });

  it('never echoes a secret value in its message', () => {
    const secret = randomBytes(16).toString('base64');
    const problems = problemsOf({ ...valid, FLOWMETER_ENCRYPTION_KEYS: `k1:${secret}` });
    expect(problems.join('\n')).not.toContain(secret);
  });
});

describe('loadCollectorConfig', () => {
  it('accepts the defaults and a budget that still leaves two database deadlines', () => {
    expect(loadCollectorConfig(valid).DB_TIMEOUT_MS).toBe(5000);
    const tight = loadCollectorConfig({
      ...valid,
      COLLECTOR_BUDGET_SECONDS: '25',
      DB_TIMEOUT_MS: '2400',
    });
    expect(tight.COLLECTOR_BUDGET_SECONDS).toBe(25);
  });

  it.each([
    ['a long database deadline', { DB_TIMEOUT_MS: '6000' }, '30,000'],
    ['a long budget', { COLLECTOR_BUDGET_SECONDS: '25' }, '35,000'],
  ])('refuses %s that cannot end inside the scheduled 30 s', (_, env, needed) => {
    let problems: readonly string[] = [];
    try {
      loadCollectorConfig({ ...valid, ...env });
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      problems = (error as ConfigError).problems;
    }
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^DB_TIMEOUT_MS .*COLLECTOR_BUDGET_SECONDS/);
    expect(problems[0]).toContain(`${needed} ms`);
    expect(problems[0]).toContain('30,000 ms');
  });
});

describe('DB_TIMEOUT_MS', () => {
  const server = {
    ...valid,
    OPERATOR_SECRETS: 'o'.repeat(32),
    SUPABASE_ANON_KEY: 'anon-key',
    STRIPE_WEBHOOK_SECRET: 'whsec_abc',
  };
  const loaders = {
    loadCollectorConfig,
    loadReporterConfig,
    loadReconcileConfig,
    loadStatusConfig,
    loadInvoicePreviewEndpointConfig,
    loadAlertsConfig,
    loadWebhooksConfig,
    loadStripeWebhookConfig,
  };

  it.each(Object.entries(loaders))('%s reads it: 5,000 ms unless set', (_, load) => {
    expect(load(server).DB_TIMEOUT_MS).toBe(5000);
    expect(load({ ...server, DB_TIMEOUT_MS: '1500' }).DB_TIMEOUT_MS).toBe(1500);
  });

  it.each(Object.entries(loaders))(
    '%s refuses one that leaves no time to record a run, or is no number',
    (_, load) => {
      expect(() => load({ ...server, DB_TIMEOUT_MS: '20000' })).toThrow(
        /DB_TIMEOUT_MS must be at most 10000 ms/,
      );
      expect(() => load({ ...server, DB_TIMEOUT_MS: 'soon' })).toThrow(
        /DB_TIMEOUT_MS must be a whole number from 500 to 10000 ms/,
      );
    },
  );

  it('is not the CLI’s: an operator at a terminal can stop a call that waits', () => {
    expect(loadConfig({ ...valid, DB_TIMEOUT_MS: '1500' })).not.toHaveProperty('DB_TIMEOUT_MS');
  });

  it('leaves a scheduled function one deadline to record its run, and the reconciliation’s scan all but two', () => {
    expect(scheduledRecordBy(1_000_000, 5000)).toBe(1_025_000);
    // A send of up to 8 s started then ends, and it and the run are recorded, inside 30 s.
    expect(sendStartBy(1_000_000, 5000, 8000)).toBe(1_012_000);
    expect(reconcileDbTimeoutMs({ DB_TIMEOUT_MS: 5000 })).toBe(20_000);
    expect(reconcileDbTimeoutMs({ DB_TIMEOUT_MS: 10_000 })).toBe(10_000);
  });
});

describe('loadReporterConfig', () => {
  it('refuses a budget that leaves no two database deadlines inside 30 s', () => {
    expect(
      loadReporterConfig({ ...valid, REPORTER_BUDGET_SECONDS: '25', DB_TIMEOUT_MS: '2000' }),
    ).toMatchObject({ REPORTER_BUDGET_SECONDS: 25 });
    expect(() => loadReporterConfig({ ...valid, REPORTER_BUDGET_SECONDS: '25' })).toThrow(
      /DB_TIMEOUT_MS with REPORTER_BUDGET_SECONDS=25: REPORTER_BUDGET_SECONDS \+ 2 × DB_TIMEOUT_MS is 35,000 ms, which must stay under the scheduled function's 30,000 ms/,
    );
  });

  it('takes how many comparisons with Stripe reconciliation runs at once, within what Stripe allows', () => {
    expect(loadReconcileConfig(valid)).toMatchObject({ RECONCILE_CONCURRENCY: 4 });
    expect(loadReconcileConfig({ ...valid, RECONCILE_CONCURRENCY: '20' })).toMatchObject({
      RECONCILE_CONCURRENCY: 20,
    });
    for (const refused of ['0', '51', 'many']) {
      expect(() => loadReconcileConfig({ ...valid, RECONCILE_CONCURRENCY: refused })).toThrow(
        /RECONCILE_CONCURRENCY/,
      );
    }
  });

  it('is not the reconciliation’s rule: it sends no reports', () => {
    expect(
      loadReconcileConfig({ ...valid, REPORTER_BUDGET_SECONDS: '25', DB_TIMEOUT_MS: '10000' }),
    ).toMatchObject({ DB_TIMEOUT_MS: 10_000 });
  });

  it('cuts unanswered sends two database deadlines before the function must end, and none from the CLI', () => {
    const config = loadReporterConfig(valid);
    expect(reporterSettings(config).cutAfterMs).toBeUndefined();
    expect(reporterSettings(config, 29_000).cutAfterMs).toBe(19_000);
  });
});

describe('loadWebhooksConfig', () => {
  const webhooks = { ...valid, WEBHOOK_MODE: 'local' };

  it('refuses an attempt timeout that leaves the scheduled sender no moment to start a send', () => {
    expect(
      loadWebhooksConfig({ ...webhooks, WEBHOOK_TIMEOUT_MS: '15000', DB_TIMEOUT_MS: '7000' }),
    ).toMatchObject({ WEBHOOK_TIMEOUT_MS: 15_000, DB_TIMEOUT_MS: 7000 });
    expect(() =>
      loadWebhooksConfig({ ...webhooks, WEBHOOK_TIMEOUT_MS: '15000', DB_TIMEOUT_MS: '10000' }),
    ).toThrow(
      /DB_TIMEOUT_MS with WEBHOOK_TIMEOUT_MS=15000: WEBHOOK_TIMEOUT_MS \+ 2 × DB_TIMEOUT_MS is 35,000 ms, which must stay under the scheduled function's 30,000 ms/,
    );
    // The combination refused is one whose every send would start too late.
    expect(sendStartBy(0, 10_000, 15_000)).toBeLessThan(0);
  });

  it('takes how many deliveries are sent at once, 8 unless set, and hands it to the sender', () => {
    expect(loadWebhooksConfig(webhooks)).toMatchObject({ WEBHOOK_CONCURRENCY: 8 });
    const config = loadWebhooksConfig({ ...webhooks, WEBHOOK_CONCURRENCY: '32' });
    expect(webhookDependencies(config).concurrency).toBe(32);
    for (const refused of ['0', '51', '2.5', 'many']) {
      expect(() => loadWebhooksConfig({ ...webhooks, WEBHOOK_CONCURRENCY: refused })).toThrow(
        /WEBHOOK_CONCURRENCY/,
      );
    }
  });
});

describe('loadEnforceConfig', () => {
  const runner = { ...valid, RUNNER_SECRETS: 'r'.repeat(32) };
  it('takes a fraction of a minute for reservations (a demo on a fast clock), down to 0.1', () => {
    expect(loadEnforceConfig(runner).RESERVATION_TTL_MINUTES).toBe(30);
    expect(
      loadEnforceConfig({ ...runner, RESERVATION_TTL_MINUTES: '0.25' }).RESERVATION_TTL_MINUTES,
    ).toBe(0.25);
    for (const bad of ['0.05', 'soon', '2000']) {
      expect(() => loadEnforceConfig({ ...runner, RESERVATION_TTL_MINUTES: bad })).toThrow(
        /RESERVATION_TTL_MINUTES/,
      );
    }
  });
});

describe('collectionSettings', () => {
  const config = loadCollectorConfig(valid);

  it('counts the budget from the invocation: what upkeep spent is not collected again', () => {
    expect(collectionSettings(config, 18).budgetMs).toBe(18_000);
    expect(collectionSettings(config, 18, 4_250).budgetMs).toBe(13_750);
  });

  it('leaves no budget, not a negative one, when the start already took all of it', () => {
    expect(collectionSettings(config, 18, 25_000).budgetMs).toBe(0);
  });

  it('cuts what is in flight two database deadlines before the function limit, counted like the budget', () => {
    expect(collectionSettings(config, 18).cutAfterMs).toBeUndefined();
    // Netlify's 30 s, less 2 × DB_TIMEOUT_MS (5 s by default).
    expect(collectionSettings(config, 18, 0, 30_000).cutAfterMs).toBe(20_000);
    expect(collectionSettings(config, 18, 4_250, 30_000)).toMatchObject({
      budgetMs: 13_750,
      cutAfterMs: 15_750,
    });
  });
});

describe.each([
  ['RUNNER_SECRETS', loadEnforceConfig],
  ['OPERATOR_SECRETS', loadStatusConfig],
] as const)('%s', (name, load) => {
  const problemOf = (value: string | undefined) => {
    try {
      load({ ...valid, [name]: value });
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as ConfigError).problems.find((p) => p.startsWith(name));
    }
    throw new Error('expected a ConfigError');
  };
  const expected =
    'a comma-separated list of secrets of at least 32 characters (openssl rand -hex 32)';

  it('takes several secrets, comma-separated, blanks around them ignored', () => {
    const [a, b] = ['a'.repeat(32), 'b'.repeat(64)];
    expect((load({ ...valid, [name]: ` ${a} ,${b}, ` }) as Record<string, unknown>)[name]).toEqual([
      a,
      b,
    ]);
  });

  it.each([
    ['missing', undefined, `is required: ${expected}`],
    ['empty, as a variable set to nothing reads as missing', '', `is required: ${expected}`],
    ['only commas', ' , ,', `must be ${expected}`],
    ['one too short beside a good one', `${'a'.repeat(32)},short`, `must be ${expected}`],
  ])('refuses it %s, saying what it takes', (_, value, message) => {
    expect(problemOf(value)).toBe(`${name} ${message}`);
  });
});
