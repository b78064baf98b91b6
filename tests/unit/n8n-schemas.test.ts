import { describe, expect, it } from 'vitest';
import { parseExecution, parseExecutionPage } from '../../src/n8n/schemas.ts';

/** An item exactly as n8n 2.41 lists it, including fields flowmeter does not read. */
const item = {
  id: '1000',
  finished: true,
  mode: 'trigger',
  retryOf: null,
  retrySuccessId: null,
  status: 'success',
  startedAt: '2026-03-01T10:00:00.000Z',
  stoppedAt: '2026-03-01T10:00:02.500Z',
  workflowId: 'VmwOO9HeTEj20kxM',
  waitTill: null,
  storedAt: 'db',
  jsonSizeBytes: 0,
  workflowVersionId: null,
};

function failure(json: unknown): string {
  const parsed = parseExecutionPage(json);
  if (parsed.ok) throw new Error('expected the page to be rejected');
  return parsed.message;
}

describe('parseExecutionPage', () => {
  it('reads a page and drops fields it does not know', () => {
    const parsed = parseExecutionPage({ data: [item], nextCursor: 'eyJsYXN0SWQiOiIxMDAwIn0=' });
    // What flowmeter reads: the item without the three fields it does not know.
    const { storedAt: _s, jsonSizeBytes: _j, workflowVersionId: _w, ...read } = item;
    expect(parsed).toEqual({
      ok: true,
      page: { data: [read], nextCursor: 'eyJsYXN0SWQiOiIxMDAwIn0=' },
    });
  });

  it('treats an absent nextCursor as the last page', () => {
    const parsed = parseExecutionPage({ data: [] });
    expect(parsed).toEqual({ ok: true, page: { data: [], nextCursor: null } });
  });

  it('normalises numeric ids and workflow ids to strings', () => {
    const parsed = parseExecutionPage({
      data: [{ ...item, id: 42, workflowId: 7 }],
      nextCursor: null,
    });
    expect(parsed.ok && parsed.page.data[0]).toMatchObject({ id: '42', workflowId: '7' });
  });

  it('accepts a queued execution with a null startedAt and no stoppedAt', () => {
    const { stoppedAt: _, ...queued } = {
      ...item,
      status: 'new',
      startedAt: null,
      finished: false,
    };
    const parsed = parseExecution(queued);
    expect(parsed.ok && parsed.execution).toMatchObject({
      status: 'new',
      startedAt: null,
      stoppedAt: null,
    });
  });

  it('accepts modes newer than this code and offsets other than Z', () => {
    const parsed = parseExecution({
      ...item,
      mode: 'agent-swarm',
      startedAt: '2026-03-01T12:00:00.000+02:00',
    });
    expect(parsed.ok && parsed.execution).toMatchObject({ mode: 'agent-swarm' });
  });

  it('names the item and field of an unknown status, with what was received', () => {
    const message = failure({ data: [item, item, item, { ...item, status: 'exploded' }] });
    expect(message).toBe(
      'data[3].status: expected one of canceled|crashed|error|new|running|success|unknown|waiting (got "exploded")',
    );
  });

  it('names a missing field', () => {
    const { workflowId: _, ...withoutWorkflow } = item;
    expect(failure({ data: [withoutWorkflow] })).toBe('data[0].workflowId: is required');
  });

  it('rejects a date that is not ISO 8601 with an offset', () => {
    expect(failure({ data: [{ ...item, startedAt: '01/03/2026 10:00' }] })).toBe(
      'data[0].startedAt: expected an ISO 8601 date-time with offset, or null (got "01/03/2026 10:00")',
    );
    expect(failure({ data: [{ ...item, stoppedAt: '2026-03-01T10:00:02' }] })).toMatch(
      /^data\[0\]\.stoppedAt: expected an ISO 8601 date-time/,
    );
  });

  it('rejects ids that are not integers', () => {
    expect(failure({ data: [{ ...item, id: '12a' }] })).toBe(
      'data[0].id: expected a string of digits (got "12a")',
    );
    expect(failure({ data: [{ ...item, id: 1.5 }] })).toBe(
      'data[0].id: expected a string of digits (got 1.5)',
    );
  });

  it('describes a body that is not a page at all', () => {
    expect(failure('<html>Bad gateway</html>')).toBe(
      '(response): expected an object with data and nextCursor (got "<html>Bad gateway</html>")',
    );
    expect(failure({ items: [] })).toBe('data: is required');
  });

  it('lists the first few problems and counts the rest', () => {
    const broken = { ...item, id: 'x', mode: '', status: 'x', startedAt: 'x', workflowId: '' };
    expect(failure({ data: [broken] })).toMatch(
      /^data\[0\]\.id: .*; data\[0\]\.mode: .*; data\[0\]\.status: .*; and 2 more$/,
    );
  });
});
