/*
 * The shapes flowmeter reads from n8n's public API (`GET /api/v1/executions` and
 * `GET /api/v1/executions/{id}`). Fields n8n adds in newer versions (storedAt,
 * jsonSizeBytes, workflowVersionId, createdAt, …) are accepted and dropped, so an
 * upgrade on the n8n side never breaks metering. Every error names the field and what
 * was there, so an operator can tell a broken proxy from an n8n change.
 */

import { z } from 'zod';
import { parseOutside } from '../domain/parse-outside.ts';

export const EXECUTION_STATUSES = [
  'canceled',
  'crashed',
  'error',
  'new',
  'running',
  'success',
  'unknown',
  'waiting',
] as const;

const SHOWN_CHARS = 60;
const SHOWN_DEPTH = 2;

/** JSON of a value, two levels deep at most: a hostile body may nest far deeper than the stack. */
function preview(value: unknown, depth: number): string {
  if (value === null || typeof value !== 'object') {
    return typeof value === 'bigint' ? `${value}n` : (JSON.stringify(value) ?? typeof value);
  }
  if (depth >= SHOWN_DEPTH) return Array.isArray(value) ? '[…]' : '{…}';
  const parts: string[] = [];
  let length = 0;
  const items: Array<[string | null, unknown]> = Array.isArray(value)
    ? value.map((item) => [null, item])
    : Object.entries(value);
  for (const [key, item] of items) {
    if (length > SHOWN_CHARS) break;
    const part = `${key === null ? '' : `${JSON.stringify(key)}:`}${preview(item, depth + 1)}`;
    parts.push(part);
    length += part.length + 1;
  }
  const body = parts.join(',') + (parts.length < items.length ? ',…' : '');
  return Array.isArray(value) ? `[${body}]` : `{${body}}`;
}

/** Renders a received value for an error message, short enough for a log line. */
function shown(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = preview(value, 0);
  return text.length > SHOWN_CHARS ? `${text.slice(0, SHOWN_CHARS - 3)}…` : text;
}

const expecting =
  (expected: string) =>
  (issue: { input?: unknown }): string =>
    issue.input === undefined ? 'is required' : `expected ${expected} (got ${shown(issue.input)})`;

const executionStatusSchema = z.enum(EXECUTION_STATUSES, {
  error: expecting(`one of ${EXECUTION_STATUSES.join('|')}`),
});

export type ExecutionStatus = z.infer<typeof executionStatusSchema>;

/** n8n ids are strings of an integer; some proxies and older versions send a JSON number. */
const numericId = z.unknown().transform((value, ctx): string => {
  if (typeof value === 'string' && /^\d+$/.test(value)) return value;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return String(value);
  ctx.addIssue({ code: 'custom', message: expecting('a string of digits')({ input: value }) });
  return z.NEVER;
});

/** Workflow ids are nanoids on current n8n and integers on old installs. */
const workflowId = z.unknown().transform((value, ctx): string => {
  if (typeof value === 'string' && value !== '') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return String(value);
  ctx.addIssue({ code: 'custom', message: expecting('a workflow id string')({ input: value }) });
  return z.NEVER;
});

const ISO_OR_NULL = 'an ISO 8601 date-time with offset, or null';
const isoDateTime = z.iso.datetime({ offset: true, error: expecting(ISO_OR_NULL) });
const nullableString = z.string({ error: expecting('a string or null') }).nullable();

const n8nExecutionSchema = z.object(
  {
    id: numericId,
    // New modes appear across n8n versions (chat, agent, evaluation), so any name is kept.
    mode: z.string({ error: expecting('a mode name') }).min(1, { error: expecting('a mode name') }),
    status: executionStatusSchema,
    // Null while the execution waits in the queue.
    startedAt: isoDateTime.nullable(),
    // Null while new or running; absent from some older responses.
    stoppedAt: isoDateTime.nullable().default(null),
    workflowId,
    retryOf: nullableString.default(null),
    retrySuccessId: nullableString.default(null),
    waitTill: isoDateTime.nullable().default(null),
    // Deprecated by n8n in favour of status; kept for diagnostics only.
    finished: z.boolean({ error: expecting('true or false') }).optional(),
  },
  { error: expecting('an execution object') },
);

export type N8nExecution = z.output<typeof n8nExecutionSchema>;

const executionPageSchema = z.object(
  {
    data: z.array(n8nExecutionSchema, { error: expecting('a list of executions') }),
    nextCursor: z
      .string({ error: expecting('a cursor string or null') })
      .nullable()
      .default(null),
  },
  { error: expecting('an object with data and nextCursor') },
);

/** One page of `GET /api/v1/executions`: newest first, `nextCursor` null on the last page. */
export type N8nPage = z.output<typeof executionPageSchema>;

export type Parsed<K extends string, T> =
  | ({ ok: true } & { [key in K]: T })
  | { ok: false; message: string };

const SHOWN_ISSUES = 3;

/** `data[3].status: expected one of …`, the path written the way the JSON is read. */
function explainIssues(error: z.ZodError): string {
  const lines = error.issues.slice(0, SHOWN_ISSUES).map((issue) => {
    const path = issue.path
      .map((key, index) =>
        typeof key === 'number' ? `[${key}]` : `${index === 0 ? '' : '.'}${String(key)}`,
      )
      .join('');
    return `${path || '(response)'}: ${issue.message}`;
  });
  const more = error.issues.length - SHOWN_ISSUES;
  return more > 0 ? `${lines.join('; ')}; and ${more} more` : lines.join('; ');
}

export function parseExecutionPage(json: unknown): Parsed<'page', N8nPage> {
  const result = parseOutside(executionPageSchema, json);
  return result.success
    ? { ok: true, page: result.data }
    : { ok: false, message: explainIssues(result.error) };
}

export function parseExecution(json: unknown): Parsed<'execution', N8nExecution> {
  const result = parseOutside(n8nExecutionSchema, json);
  return result.success
    ? { ok: true, execution: result.data }
    : { ok: false, message: explainIssues(result.error) };
}
