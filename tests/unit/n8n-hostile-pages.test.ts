import fc from 'fast-check';
import { HttpResponse, http } from 'msw';
import { describe, expect, it } from 'vitest';
import { checkPage } from '../../src/collector/page-checks.ts';
import { createN8nClient, N8nApiError } from '../../src/n8n/client.ts';
import { useMockServer } from '../support/msw.ts';

/**
 * Any body at all, as an executions page: the client answers a page or an N8nApiError with
 * a short message, never another exception (a TypeError, a stack overflow), and a page it
 * accepts is one the walk can check.
 */

const BASE_URL = 'https://any.n8n.example';
const server = useMockServer();

const client = createN8nClient({ baseUrl: BASE_URL, apiKey: 'k', retries: 0, timeoutMs: 5000 });

const executionLike = fc.record(
  {
    id: fc.oneof(fc.string(), fc.nat().map(String), fc.integer(), fc.constant(null)),
    mode: fc.oneof(fc.constantFrom('trigger', 'manual', 'webhook'), fc.string(), fc.anything()),
    status: fc.oneof(fc.constantFrom('success', 'error', 'running', 'waiting'), fc.anything()),
    startedAt: fc.oneof(
      fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
      fc.constant(null),
      fc.anything(),
    ),
    workflowId: fc.oneof(fc.string(), fc.integer(), fc.anything()),
    extra: fc.anything(),
  },
  { requiredKeys: [] },
);
const pageLike = fc.oneof(
  fc.anything(),
  fc.record(
    {
      data: fc.oneof(fc.array(executionLike, { maxLength: 30 }), fc.anything()),
      nextCursor: fc.anything(),
    },
    { requiredKeys: [] },
  ),
);

describe('any body as an executions page', () => {
  it('is a page or an N8nApiError with a short message, nothing else', async () => {
    await fc.assert(
      fc.asyncProperty(pageLike, async (body) => {
        server.use(
          http.get(`${BASE_URL}/api/v1/executions`, () =>
            body === undefined ? new HttpResponse('') : HttpResponse.json(body as never),
          ),
        );
        const outcome = await client.listExecutions({ limit: 250 }).then(
          (page) => ({ page }),
          (error: unknown) => ({ error }),
        );
        if ('error' in outcome) {
          expect(outcome.error).toBeInstanceOf(N8nApiError);
          expect((outcome.error as Error).message.length).toBeLessThan(800);
        } else {
          const check = checkPage({ cursor: null, lowestSeenId: null }, outcome.page);
          expect(typeof check.ok).toBe('boolean');
        }
      }),
      { numRuns: 200 },
    );
  });

  it('a page whose values have a length no check can read is an N8nApiError naming the place', async () => {
    server.use(
      http.get(`${BASE_URL}/api/v1/executions`, () =>
        HttpResponse.json(
          JSON.parse('{"data":[{"id":"1","mode":{"length":{"toString":""}}}],"nextCursor":null}'),
        ),
      ),
    );
    const error = await client.listExecutions({ limit: 250 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(N8nApiError);
    expect((error as Error).message).toContain('data[0].mode: holds a value of the wrong type');
  });
});
