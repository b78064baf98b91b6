import type { N8nExecution, N8nPage } from '../../src/n8n/schemas.ts';

/**
 * An execution page as n8n lists it, for the unit tests of the page checks: every execution
 * is the same but for its id, so the ids (and the cursor) alone decide what a check says.
 */
export const pageOf = (ids: Array<number | string>, nextCursor: string | null = null): N8nPage => ({
  data: ids.map(execution),
  nextCursor,
});

function execution(id: number | string): N8nExecution {
  return {
    id: String(id),
    mode: 'trigger',
    status: 'success',
    startedAt: '2026-11-20T10:00:00.000Z',
    stoppedAt: '2026-11-20T10:00:01.000Z',
    workflowId: 'wf1',
    retryOf: null,
    retrySuccessId: null,
    waitTill: null,
  };
}
