import { describe, expect, it } from 'vitest';
import { collect, createSource, useN8nServer } from '../support/collector.ts';
import { statusEndpoint } from '../support/status.ts';

const server = useN8nServer();
const { get, forTenants } = statusEndpoint();

describe('GET /api/v1/status', () => {
  it('reports sources, Stripe reports, alert deliveries and runs, healthy or not', async () => {
    const response = await get();
    const body = (await response.json()) as Record<string, unknown> & {
      healthy: boolean;
      needs_attention: string[];
    };
    expect(response.status).toBe(body.healthy ? 200 : 503);
    expect(Object.keys(body)).toEqual(
      expect.arrayContaining([
        'healthy',
        'needs_attention',
        'sources',
        'meter_reports',
        'alert_deliveries',
        'collector_runs',
      ]),
    );
  });

  it('answers 503 naming the problem when a source is failing', async () => {
    const source = await createSource(server);
    source.fake.failNext({ kind: 'status', status: 401, body: { message: 'Unauthorized' } }, 5);
    await collect([source]);
    const response = await get();
    expect(response.status).toBe(503);
    const body = (await response.json()) as { healthy: boolean; needs_attention: string[] };
    expect(body.healthy).toBe(false);
    expect(body.needs_attention.join(' ')).toMatch(/failing/);
  });

  it("with ?tenant= reports only those tenants: another tenant's failing source is not counted", async () => {
    const failing = await createSource(server);
    failing.fake.failNext({ kind: 'status', status: 401, body: { message: 'Unauthorized' } }, 5);
    const healthy = await createSource(server);
    healthy.fake.addMany(2);
    await collect([failing, healthy]);
    const mine = (await (await forTenants([healthy.tenantId])).json()) as {
      sources: { total: number; failing: number };
    };
    expect(mine.sources).toMatchObject({ total: 1, failing: 0 });
    const theirs = await forTenants([failing.tenantId]);
    expect(theirs.status).toBe(503);
    expect(((await theirs.json()) as { sources: { failing: number } }).sources.failing).toBe(1);
  });

  it('refuses a tenant filter that is not a tenant id, with 400', async () => {
    const response = await forTenants(['acme; drop table tenants']);
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(
      /tenant id \(a UUID\)/,
    );
  });

  it.each([
    ['no secret', {}],
    ['a wrong secret', { authorization: `Bearer ${'0'.repeat(64)}` }],
  ])('answers 401 with %s', async (_, headers) => {
    const response = await get(headers);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer/);
  });

  it('answers 405 to other methods', async () => {
    expect((await get(undefined, 'POST')).status).toBe(405);
  });
});
