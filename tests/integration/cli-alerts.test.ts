import { randomBytes } from 'node:crypto';
import { HttpResponse, http } from 'msw';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { runCliWith } from '../support/cli.ts';
import { useN8nServer } from '../support/collector.ts';
import { setCollectedUsage } from '../support/enforcement.ts';
import { useTimedOutDatabase } from '../support/faults.ts';
import { createPlan, createTenant } from '../support/fixtures.ts';
import { superuser } from '../support/stack.ts';

// Channels here always belong to a tenant: a global one would receive other test files'
// alerts too.
const server = useN8nServer();
const timedOut = useTimedOutDatabase();
const cli = runCliWith;

/** A Slack incoming webhook (msw): the texts it got; answers `status` (200 "ok" by default). */
function fakeSlack(status = 200) {
  const url = `https://hooks.slack.com/services/T0CLI/B0CLI/${randomBytes(12).toString('hex')}`;
  const texts: string[] = [];
  server.use(
    http.post(url, async ({ request }) => {
      texts.push(((await request.json()) as { text: string }).text);
      return status === 200
        ? new HttpResponse('ok')
        : new HttpResponse('internal_error', { status });
    }),
  );
  return { url, texts };
}

/** A tenant whose Slack channel was added with the CLI, the URL piped in. */
async function tenantWithSlack(status = 200) {
  const tenant = await createTenant((await createPlan({ included_executions: 10 })).id);
  const slack = fakeSlack(status);
  const added = await cli(
    [
      'alerts',
      'channels',
      'add',
      '--kind',
      'slack',
      '--target',
      '-',
      '--tenant',
      tenant.external_ref as string,
      '--json',
    ],
    { stdin: `${slack.url}\n` },
  );
  expect(added.code).toBe(EXIT.ok);
  const channel = JSON.parse(added.out) as { id: number; tenant_id: string; target?: string };
  return { tenant, slack, channel };
}

async function deliveryStatuses(tenantId: string) {
  const { rows } = await superuser().query<{ status: string }>(
    `select d.status from public.alert_deliveries d
     join public.usage_alerts a on a.id = d.alert_id where a.tenant_id = $1 order by a.threshold`,
    [tenantId],
  );
  return rows.map((r) => r.status);
}

describe('flowmeter alerts channels', () => {
  it('adds a Slack channel from standard input and never prints the webhook URL', async () => {
    const { tenant, slack, channel } = await tenantWithSlack();
    expect(channel.tenant_id).toBe(tenant.id);
    expect(channel).not.toHaveProperty('target');

    const listed = await cli(['alerts', 'channels', 'list', '--tenant', tenant.id]);
    expect(listed.code).toBe(EXIT.ok);
    expect(listed.out).toContain('https://hooks.slack.com/services/T0CLI/…');
    expect(listed.out).not.toContain(slack.url.split('/').at(-1));
    const json = await cli(['alerts', 'channels', 'list', '--tenant', tenant.id, '--json']);
    const own = (JSON.parse(json.out) as Array<{ id: number; tenant_id: string | null }>).filter(
      (c) => c.tenant_id === tenant.id,
    );
    expect(own).toEqual([expect.objectContaining({ id: channel.id, enabled: true, delivered: 0 })]);
    expect(json.out).not.toContain(slack.url);
  });

  it('refuses a target that does not fit the kind, and stores nothing', async () => {
    const tenant = await createTenant();
    for (const [kind, target] of [
      ['slack', 'https://example.com/hook'],
      ['email', 'not-an-address'],
    ]) {
      const result = await cli([
        'alerts',
        'channels',
        'add',
        '--kind',
        kind as string,
        '--target',
        target as string,
        '--tenant',
        tenant.id,
      ]);
      expect(result.code).toBe(EXIT.usage);
      expect(result.err).toMatch(/--target must be .*Nothing was stored/);
    }
    const empty = await cli(['alerts', 'channels', 'add', '--kind', 'slack', '--target', '-']);
    expect(empty).toMatchObject({ code: EXIT.usage });
    expect(empty.err).toMatch(/--target - read nothing from standard input/);
    const { rows } = await superuser().query(
      'select count(*)::int as n from public.alert_channels where tenant_id = $1',
      [tenant.id],
    );
    expect(rows[0].n).toBe(0);
  });

  it('answers an unknown channel id with how to find one', async () => {
    const result = await cli(['alerts', 'channels', 'disable', '999999999']);
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(/alert channel 999999999 not found.*channels list/);
    const bad = await cli(['alerts', 'channels', 'disable', 'abc']);
    expect(bad.code).toBe(EXIT.usage);
    expect(bad.err).toMatch(/must be a channel id/);
  });
});

describe('flowmeter alerts deliver', () => {
  it("sends the named tenant's due alerts now, and no one else's", async () => {
    const mine = await tenantWithSlack();
    const other = await tenantWithSlack();
    await setCollectedUsage(mine.tenant.id, 10); // 80 % and 100 %
    await setCollectedUsage(other.tenant.id, 8);

    const run = await cli(['alerts', 'deliver', '--tenant', mine.tenant.external_ref as string]);
    expect(run.code).toBe(EXIT.ok);
    expect(run.out).toBe('2 due: 2 delivered, 0 failed (retried later), 0 given up');
    expect(mine.slack.texts).toEqual([
      expect.stringContaining('has used 80 %'),
      expect.stringContaining('has used all the executions'),
    ]);
    expect(await deliveryStatuses(mine.tenant.id)).toEqual(['delivered', 'delivered']);
    expect(other.slack.texts).toEqual([]);
    expect(await deliveryStatuses(other.tenant.id)).toEqual(['pending']);

    const again = await cli(['alerts', 'deliver', '--tenant', mine.tenant.id, '--json']);
    expect(JSON.parse(again.out)).toEqual({
      claimed: 0,
      delivered: 0,
      failed: 0,
      gaveUp: 0,
      deferred: 0,
    });
  });

  it('exits 1 when a channel fails; the delivery waits for its retry', async () => {
    const { tenant } = await tenantWithSlack(500);
    await setCollectedUsage(tenant.id, 8);
    const run = await cli(['alerts', 'deliver', '--tenant', tenant.id]);
    expect(run.code).toBe(EXIT.failed);
    expect(run.out).toBe('1 due: 0 delivered, 1 failed (retried later), 0 given up');
    expect(run.err).toMatch(/flowmeter status/);
    expect(await deliveryStatuses(tenant.id)).toEqual(['failed']);
  });

  it("a disabled channel's pending delivery waits until it is enabled again", async () => {
    const { tenant, slack, channel } = await tenantWithSlack();
    await setCollectedUsage(tenant.id, 8);
    const disabled = await cli(['alerts', 'channels', 'disable', String(channel.id)]);
    expect(disabled).toMatchObject({ code: EXIT.ok, out: `channel ${channel.id}: disabled` });
    // Alerts raised while it is disabled are not sent to it at all.
    await setCollectedUsage(tenant.id, 10);

    expect((await cli(['alerts', 'deliver', '--tenant', tenant.id])).out).toMatch(/^0 due/);
    expect(slack.texts).toEqual([]);
    expect(await deliveryStatuses(tenant.id)).toEqual(['pending']);

    await cli(['alerts', 'channels', 'enable', String(channel.id)]);
    expect((await cli(['alerts', 'deliver', '--tenant', tenant.id])).out).toMatch(
      /^1 due: 1 delivered/,
    );
    expect(slack.texts).toHaveLength(1);
  });

  it('exits 3 when the database times out on the claim, saying what to check', async () => {
    const run = await cli(['alerts', 'deliver'], { env: { SUPABASE_URL: timedOut.url() } });
    expect(run.code).toBe(EXIT.unavailable);
    expect(run.err).toMatch(/could not reach the database at .* \(HTTP 504\)\. Is it running/);
    expect(run.out).toBe('');
  });

  it('refuses an unknown tenant before sending anything', async () => {
    const result = await cli(['alerts', 'deliver', '--tenant', 'no-such-tenant-ref']);
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(/no-such-tenant-ref/);
  });
});
