import { parseEnv } from 'node:util';
import { describe, expect, it } from 'vitest';
import { formatLocalEnv, type LocalEnv } from '../../src/local/local-env.ts';

const base: LocalEnv = {
  supabaseUrl: 'http://127.0.0.1:54321',
  anonKey: 'a.b.c',
  serviceRoleKey: 'd.e.f',
  jwtSecret: 'secret',
  databaseUrl: 'postgresql://postgres:postgres@127.0.0.1:54322/postgres',
  encryptionKeys: 'local:AAAA',
  runnerSecret: 'r',
  internalSecret: 'i',
  dashboardUrl: 'http://127.0.0.1:54323',
};

describe('local.env', () => {
  it('carries the demo sign-ins when the demo seeded them, and none without it', () => {
    const withDemo = parseEnv(
      formatLocalEnv({
        ...base,
        demoSignIns: {
          tenant: { email: 'acme@demo.flowmeter.test', password: 'p1 with space' },
          operator: { email: 'operator@demo.flowmeter.test', password: 'p2' },
        },
      }),
    );
    expect(withDemo).toMatchObject({
      FLOWMETER_DEMO_TENANT_EMAIL: 'acme@demo.flowmeter.test',
      FLOWMETER_DEMO_TENANT_PASSWORD: 'p1 with space',
      FLOWMETER_DEMO_OPERATOR_EMAIL: 'operator@demo.flowmeter.test',
      FLOWMETER_DEMO_OPERATOR_PASSWORD: 'p2',
    });
    expect(Object.keys(parseEnv(formatLocalEnv(base))).filter((k) => k.includes('DEMO'))).toEqual(
      [],
    );
  });
});
