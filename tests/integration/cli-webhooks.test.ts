import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { WEBHOOK_EVENT_TYPES } from '../../src/webhooks/event-types.ts';
import { runCliWith } from '../support/cli.ts';
import { useN8nServer } from '../support/collector.ts';
import { useTimedOutDatabase } from '../support/faults.ts';
import { superuser } from '../support/stack.ts';
import { fakeReceiver, type ReceiverAnswer } from '../support/webhooks.ts';

/**
 * `flowmeter webhooks` end to end against the test stack: receivers behind msw verify
 * what the CLI's own delivery run sends with the secrets the CLI printed.
 */
const server = useN8nServer();
const timedOut = useTimedOutDatabase();
const local = { env: { WEBHOOK_MODE: 'local' } };

/**
 * A receiver subscribed to webhook.test only: other files' tenants raise real events
 * meanwhile, which would reach a receiver subscribed to them (and, failing, show in those
 * files' status).
 */
async function addedEndpoint(answer?: () => ReceiverAnswer, events = 'webhook.test') {
  const receiver = fakeReceiver(server, answer);
  const added = await runCliWith(
    [
      'webhooks',
      'add',
      '--url',
      receiver.url,
      '--events',
      events,
      '--description',
      'ops',
      '--json',
    ],
    local,
  );
  expect(added.code).toBe(EXIT.ok);
  const endpoint = JSON.parse(added.out) as { id: string; secret: string; event_types: string[] };
  receiver.secrets.push(endpoint.secret);
  return { receiver, endpoint };
}

describe('flowmeter webhooks', () => {
  it('add prints the secret once; test delivers a webhook.test the receiver verifies with it', async () => {
    const { receiver, endpoint } = await addedEndpoint();
    expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(endpoint.event_types).toEqual(['webhook.test']);
    const { rows } = await superuser().query(
      'select secret_ciphertext from public.webhook_endpoint_secrets where endpoint_id = $1',
      [endpoint.id],
    );
    expect(rows[0]?.secret_ciphertext).toMatch(/^fm1\./);
    expect(rows[0]?.secret_ciphertext).not.toContain(endpoint.secret.slice(6));

    const test = await runCliWith(['webhooks', 'test', endpoint.id], local);
    expect(test).toMatchObject({ code: EXIT.ok });
    expect(test.out).toMatch(/^msg_[0-9a-f]{32} delivered \(HTTP 204\)$/);
    expect(receiver.requests.map((r) => r.verifiedWith)).toEqual([[0]]);

    const list = await runCliWith(['webhooks', 'list'], local);
    expect(list.out).toContain(endpoint.id);
    const listed = await runCliWith(['webhooks', 'list', '--json'], local);
    const row = (JSON.parse(listed.out) as { id: string; delivered: number }[]).find(
      (e) => e.id === endpoint.id,
    );
    expect(row).toMatchObject({ delivered: 1 });
    expect(JSON.stringify(row)).not.toContain('whsec_');
  });

  it('rotate-secret: deliveries carry both signatures during the grace period', async () => {
    const { receiver, endpoint } = await addedEndpoint();
    const rotated = await runCliWith(
      ['webhooks', 'rotate-secret', endpoint.id, '--grace-hours', '2', '--json'],
      local,
    );
    expect(rotated.code).toBe(EXIT.ok);
    receiver.secrets.push((JSON.parse(rotated.out) as { secret: string }).secret);
    expect((await runCliWith(['webhooks', 'test', endpoint.id], local)).code).toBe(EXIT.ok);
    expect(receiver.requests.map((r) => r.verifiedWith)).toEqual([[0, 1]]);
    const { rows } = await superuser().query(
      `select extract(epoch from expires_at - created_at) > 0 as expires, expires_at is null as current
       from public.webhook_endpoint_secrets where endpoint_id = $1 order by id`,
      [endpoint.id],
    );
    expect(rows.map((r) => r.current)).toEqual([false, true]);
  });

  it('a failing receiver: test exits 1 and deliveries --failed shows why', async () => {
    const { endpoint } = await addedEndpoint(() => 'error');
    const test = await runCliWith(['webhooks', 'test', endpoint.id], local);
    expect(test.code).toBe(EXIT.failed);
    expect(test.out).toMatch(/not delivered: HTTP 500/);
    const failed = await runCliWith(
      ['webhooks', 'deliveries', '--failed', '--endpoint', endpoint.id, '--json'],
      local,
    );
    expect(JSON.parse(failed.out)).toMatchObject([
      { endpoint_id: endpoint.id, event_type: 'webhook.test', status: 'failed', attempts: 1 },
    ]);
  });

  it('--events all subscribes to every event type but webhook.test', async () => {
    const { endpoint } = await addedEndpoint(undefined, 'all');
    await runCliWith(['webhooks', 'disable', endpoint.id], local);
    expect(endpoint.event_types).toEqual(
      WEBHOOK_EVENT_TYPES.filter((t) => t !== 'webhook.test').sort(),
    );
  });

  it('disable and enable; test refuses a disabled endpoint', async () => {
    const { endpoint } = await addedEndpoint();
    expect((await runCliWith(['webhooks', 'disable', endpoint.id], local)).out).toMatch(/disabled/);
    const refused = await runCliWith(['webhooks', 'test', endpoint.id], local);
    expect(refused.code).toBe(EXIT.usage);
    expect(refused.err).toMatch(/is disabled/);
    expect((await runCliWith(['webhooks', 'enable', endpoint.id], local)).code).toBe(EXIT.ok);
  });

  it.each([
    [['--url', 'http://hooks.example.com/x', '--events', 'all'], {}, /must start with https/],
    [['--url', 'https://10.0.0.8/x', '--events', 'all'], {}, /private address/],
    [
      ['--url', 'https://hooks.example.com/x', '--events', 'tenant.blocked,nope'],
      local,
      /unknown: nope/,
    ],
  ] as const)('add refuses bad input and stores nothing (%j)', async (args, options, message) => {
    const before = await superuser().query(
      'select count(*)::int as n from public.webhook_endpoints',
    );
    const run = await runCliWith(['webhooks', 'add', ...args], options);
    expect(run.code).toBe(EXIT.usage);
    expect(run.err).toMatch(message);
    const after = await superuser().query(
      'select count(*)::int as n from public.webhook_endpoints',
    );
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });

  it('deliver exits 3 when the database times out on the claim, saying what to check', async () => {
    const run = await runCliWith(['webhooks', 'deliver'], {
      env: { SUPABASE_URL: timedOut.url() },
    });
    expect(run.code).toBe(EXIT.unavailable);
    expect(run.err).toMatch(/could not reach the database at .* \(HTTP 504\)\. Is it running/);
    expect(run.out).toBe('');
  });

  it('an unknown endpoint is a usage error naming how to find the ids', async () => {
    const run = await runCliWith(
      ['webhooks', 'disable', '00000000-0000-4000-8000-000000000000'],
      local,
    );
    expect(run.code).toBe(EXIT.usage);
    expect(run.err).toMatch(/webhooks list/);
  });
});
