import { randomUUID } from 'node:crypto';
import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { runCliWith } from '../support/cli.ts';
import { createTenant } from '../support/fixtures.ts';
import { anonClient, superuser } from '../support/stack.ts';

const cli = (args: string[], stdin?: string) =>
  runCliWith(args, stdin === undefined ? {} : { stdin });
const newEmail = () => `cli-${randomUUID().slice(0, 8)}@example.test`;

async function signIn(email: string, password: string) {
  const client = anonClient();
  return client.auth.signInWithPassword({ email, password });
}

async function usersWith(email: string) {
  const { rows } = await superuser().query('select id from auth.users where email = $1', [email]);
  return rows;
}

describe('flowmeter members add', () => {
  it('creates the user on the local stack and prints a password once that signs in', async () => {
    const tenant = await createTenant();
    const email = newEmail();
    const result = await cli([
      'members',
      'add',
      '--tenant',
      tenant.external_ref as string,
      '--email',
      email,
    ]);
    expect(result.code).toBe(EXIT.ok);
    expect(result.out).toMatch(/│ role\s+│ viewer/);
    expect(result.out).toMatch(/│ account\s+│ created/);
    expect(result.err).toMatch(/shown this once/);
    const password = /│ password\s+│ (\S+)/.exec(result.out)?.[1] as string;
    const { data, error } = await signIn(email, password);
    expect(error).toBeNull();
    expect(data.user?.email).toBe(email);

    const again = await cli([
      'members',
      'add',
      '--tenant',
      tenant.id,
      '--email',
      email,
      '--role',
      'admin',
    ]);
    expect(again.code).toBe(EXIT.ok);
    expect(again.out).toMatch(/│ account\s+│ existing/);
    expect(again.out).not.toMatch(/password/);
  });

  it('takes the password from standard input with --password -', async () => {
    const tenant = await createTenant();
    const email = newEmail();
    const result = await cli(
      ['members', 'add', '--tenant', tenant.id, '--email', email, '--password', '-', '--json'],
      'piped password 42\n',
    );
    expect(result.code).toBe(EXIT.ok);
    const added = JSON.parse(result.out);
    expect(added).toMatchObject({ role: 'viewer', user: { email, outcome: 'created' } });
    expect(added.user).not.toHaveProperty('generatedPassword');
    expect((await signIn(email, 'piped password 42')).error).toBeNull();
  });

  it('takes a piped password verbatim: only its one trailing line ending is dropped', async () => {
    const tenant = await createTenant();
    const email = newEmail();
    const password = '  spaced password\t ';
    const result = await cli(
      ['members', 'add', '--tenant', tenant.id, '--email', email, '--password', '-'],
      `${password}\r\n`,
    );
    expect(result.code).toBe(EXIT.ok);
    expect((await signIn(email, password)).error).toBeNull();
    expect((await signIn(email, password.trim())).error).not.toBeNull();
  });

  it('refuses a --tenant holding characters /api/v1/enforce refuses, before any lookup', async () => {
    const email = newEmail();
    for (const tenant of ['acme\u0000', 'ac\u200Bme', 'acme\nother']) {
      const result = await cli(['members', 'add', '--tenant', tenant, '--email', email]);
      expect(result.code).toBe(EXIT.usage);
      expect(result.err).toMatch(/--tenant.*found U\+[0-9A-F]{4} at position \d+/s);
      expect(result.err).not.toMatch(/no tenant has/);
    }
    expect(await usersWith(email)).toEqual([]);
  });

  it('refuses bad arguments with exit 2 and creates nobody', async () => {
    const tenant = await createTenant();
    const email = newEmail();
    const cases = [
      ['--email', 'not-an-address'],
      ['--email', email, '--role', 'owner'],
      ['--email', email, '--password', 'on-the-command-line'],
    ];
    for (const extra of cases) {
      const result = await cli(['members', 'add', '--tenant', tenant.id, ...extra]);
      expect(result.code).toBe(EXIT.usage);
    }
    const unknown = await cli(['members', 'add', '--tenant', 'no-such-tenant', '--email', email]);
    expect(unknown.code).toBe(EXIT.usage);
    expect(unknown.err).toMatch(/no tenant has the id or external reference "no-such-tenant"/);
    const empty = await cli(
      ['members', 'add', '--tenant', tenant.id, '--email', email, '--password', '-'],
      '',
    );
    expect(empty.code).toBe(EXIT.usage);
    expect(await usersWith(email)).toEqual([]);
  });
});

describe('flowmeter members list and remove', () => {
  it('lists members by tenant and removes one', async () => {
    const tenant = await createTenant();
    const email = newEmail();
    expect((await cli(['members', 'add', '--tenant', tenant.id, '--email', email])).code).toBe(
      EXIT.ok,
    );

    const table = await cli(['members', 'list', '--tenant', tenant.id]);
    expect(table.code).toBe(EXIT.ok);
    expect(table.out).toContain(email);
    const json = await cli(['members', 'list', '--tenant', tenant.id, '--json']);
    expect(JSON.parse(json.out)).toEqual([
      expect.objectContaining({ tenant_id: tenant.id, email, role: 'viewer' }),
    ]);

    const removed = await cli(['members', 'remove', '--tenant', tenant.id, '--email', email]);
    expect(removed.code).toBe(EXIT.ok);
    expect(removed.out).toMatch(/is no longer a member/);
    const again = await cli(['members', 'remove', '--tenant', tenant.id, '--email', email]);
    expect(again.code).toBe(EXIT.usage);
    expect(again.err).toMatch(/is not a member of/);
    expect((await cli(['members', 'list', '--tenant', tenant.id])).out).toMatch(/No members yet/);
    // The account itself stays.
    expect(await usersWith(email)).toHaveLength(1);
  });
});

describe('flowmeter operators', () => {
  it('add marks (and creates) the user; list shows them; remove clears the mark', async () => {
    const email = newEmail();
    const added = await cli(['operators', 'add', '--email', email]);
    expect(added.code).toBe(EXIT.ok);
    const password = /│ password\s+│ (\S+)/.exec(added.out)?.[1] as string;
    const { data } = await signIn(email, password);
    expect(decodeJwt(data.session?.access_token as string).app_metadata).toMatchObject({
      flowmeter_role: 'operator',
    });

    const listed = await cli(['operators', 'list', '--json']);
    expect(JSON.parse(listed.out).map((o: { email: string }) => o.email)).toContain(email);
    const table = await cli(['operators', 'list']);
    expect(table.code).toBe(EXIT.ok);
    expect(table.out).toMatch(/email\s+│ since\s+│ last sign-in\s+│ user id/);
    expect(table.out).toContain(email);

    expect((await cli(['operators', 'remove', '--email', email])).code).toBe(EXIT.ok);
    const after = await cli(['operators', 'list', '--json']);
    expect(JSON.parse(after.out).map((o: { email: string }) => o.email)).not.toContain(email);
    const again = await cli(['operators', 'remove', '--email', email]);
    expect(again.code).toBe(EXIT.usage);
    expect(again.err).toMatch(/is not an operator/);
  });

  it('marks an existing tenant user without touching their password', async () => {
    const tenant = await createTenant();
    const email = newEmail();
    await cli(
      ['members', 'add', '--tenant', tenant.id, '--email', email, '--password', '-'],
      'kept password 1',
    );
    const added = await cli(['operators', 'add', '--email', email]);
    expect(added.code).toBe(EXIT.ok);
    expect(added.out).toMatch(/│ account\s+│ existing/);
    expect((await signIn(email, 'kept password 1')).error).toBeNull();
  });
});
