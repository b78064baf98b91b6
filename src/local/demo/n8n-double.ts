import { HttpResponse, http, type RequestHandler } from 'msw';
import { EXECUTION_STATUSES, type ExecutionStatus } from '../../n8n/schemas.ts';

export interface FakeExecutionInput {
  status?: ExecutionStatus;
  mode?: string;
  workflowId?: string;
  /** The project owning the workflow, for the `projectId` filter. */
  projectId?: string | null;
  startedAt?: string | null;
  stoppedAt?: string | null;
  retryOf?: string | null;
  /** Not yet committed: neither listed nor fetchable until `reveal`. */
  hidden?: boolean;
}

export interface FakeExecution {
  id: string;
  status: ExecutionStatus;
  mode: string;
  workflowId: string;
  projectId: string | null;
  startedAt: string | null;
  stoppedAt: string | null;
  retryOf: string | null;
  retrySuccessId: string | null;
  waitTill: string | null;
  finished: boolean;
  hidden: boolean;
}

export type FakeFailure =
  | { kind: 'status'; status: number; body?: unknown; headers?: Record<string, string> }
  /** Answered with 200; a string body is sent as is, anything else as JSON. */
  | { kind: 'malformed'; body: unknown }
  | { kind: 'network' }
  /** Never answers; the request ends only when the client aborts it. */
  | { kind: 'hang' };

export interface N8nEmulatorOptions {
  baseUrl: string;
  apiKey: string;
  /** false: an n8n older than 2.41, without startedAfter/startedBefore. */
  supportsStartedAfter?: boolean;
}

const MAX_ITEMS_PER_PAGE = 250;
const DEFAULT_LIMIT = 100;
const EPOCH = Date.parse('2026-01-01T00:00:00.000Z');
const MINUTE = 60_000;
const ENDED: ReadonlySet<ExecutionStatus> = new Set([
  'canceled',
  'crashed',
  'error',
  'success',
  'waiting',
]);
/** Count-based pruning leaves these alone (`ExecutionRepository.softDeletePrunableExecutions`). */
const UNPRUNABLE: ReadonlySet<ExecutionStatus> = new Set(['new', 'running', 'waiting']);

const LEGACY_LIST_PARAMS = ['limit', 'cursor', 'includeData', 'status', 'workflowId', 'projectId'];
const LIST_PARAMS = [
  ...LEGACY_LIST_PARAMS,
  'ignoreDataSizeLimit',
  'redactExecutionData',
  'startedAfter',
  'startedBefore',
];
const LEGACY_GET_PARAMS = ['includeData'];
const GET_PARAMS = [...LEGACY_GET_PARAMS, 'ignoreDataSizeLimit', 'redactExecutionData'];
/** zod's `datetime()` without options, which n8n ≥ 2.41 validates startedAfter with: UTC only. */
const ZOD_DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

const iso = (time: number) => new Date(time).toISOString();
const message = (status: number, text: string) => HttpResponse.json({ message: text }, { status });
const encodeCursor = (lastId: string, limit: number) =>
  Buffer.from(JSON.stringify({ lastId, limit })).toString('base64');

/**
 * A test and demo double, not product code: an in-memory n8n public API for the executions
 * endpoints, served through msw in tests (so the real client code runs over real `fetch`)
 * and over node:http by the npm start demo. It follows n8n's own source, not its docs:
 *
 * - order id descending; `limit` default 100; the cursor is base64 of
 *   `{"lastId":"<id>","limit":N}` and means "ids below lastId"; its limit wins over the
 *   query's (`packages/cli/src/public-api/v1/controllers/executions.public.controller.ts`);
 * - `nextCursor` is null exactly when no matching execution is left below the page's last
 *   id, so a page of exactly `limit` items can still end the listing
 *   (`shared/services/pagination.service.ts`, `encodeCursorPagination`);
 * - running executions are left out unless `status=running` (n8n ≥ 2.41; older versions
 *   always leave them out); `status=error` also matches crashed ones; `status` values
 *   without a filter of their own (new, crashed, unknown) filter nothing
 *   (`ExecutionRepository.getStatusCondition`);
 * - `DELETE /api/v1/executions/{id}` removes an execution for good (404 afterwards), and
 *   `prune` soft-deletes the oldest finished ones beyond a count, as
 *   `EXECUTIONS_DATA_PRUNE_MAX_COUNT` does (observed on n8n 2.40.7);
 * - `supportsStartedAfter: false` behaves like n8n < 2.41, whose request validator
 *   (express-openapi-validator) answers 400 `Unknown query parameter 'startedAfter'`,
 *   rejects `limit` above 250 and words its 401s differently; n8n ≥ 2.41 caps `limit` at
 *   250 and answers every 401 with `Unauthorized`.
 */
export class N8nEmulator {
  readonly requests: Array<{ path: string; query: Record<string, string> }> = [];
  private readonly baseUrl: string;
  private readonly apiKey: string;
  private readonly legacy: boolean;
  private readonly executions = new Map<number, FakeExecution>();
  private readonly failures: FakeFailure[] = [];
  private nextId = 1;

  constructor(options: N8nEmulatorOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.apiKey = options.apiKey;
    this.legacy = options.supportsStartedAfter === false;
  }

  add(input: FakeExecutionInput = {}): FakeExecution {
    const id = this.nextId++;
    const status = input.status ?? 'success';
    const startedAt =
      input.startedAt !== undefined
        ? input.startedAt
        : status === 'new'
          ? null
          : iso(EPOCH + id * MINUTE);
    const execution: FakeExecution = {
      id: String(id),
      status,
      mode: input.mode ?? 'trigger',
      workflowId: input.workflowId ?? 'wfDefault0000001',
      projectId: input.projectId ?? null,
      startedAt,
      stoppedAt: null,
      retryOf: input.retryOf ?? null,
      retrySuccessId: null,
      waitTill: null,
      finished: false,
      hidden: input.hidden ?? false,
    };
    this.settle(execution, input.stoppedAt);
    this.executions.set(id, execution);
    return { ...execution };
  }

  addMany(n: number, make: (i: number) => FakeExecutionInput = () => ({})): FakeExecution[] {
    return Array.from({ length: n }, (_, i) => this.add(make(i)));
  }

  /** E.g. `update(id, { status: 'success' })` finishes a running execution. */
  update(id: string, patch: Partial<FakeExecutionInput>): void {
    const execution = this.get(id);
    const { stoppedAt, ...rest } = patch;
    Object.assign(
      execution,
      Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)),
    );
    if (
      patch.status !== undefined &&
      patch.startedAt === undefined &&
      execution.startedAt === null
    ) {
      if (patch.status !== 'new') execution.startedAt = iso(EPOCH + Number(id) * MINUTE);
    }
    this.settle(execution, stoppedAt);
  }

  /** Every execution the instance holds (including hidden ones), as copies. */
  all(): FakeExecution[] {
    return [...this.executions.values()].map((e) => ({ ...e }));
  }

  reveal(id: string): void {
    this.get(id).hidden = false;
  }

  remove(id: string): void {
    this.get(id);
    this.executions.delete(Number(id));
  }

  /** n8n reinstalled at the same address: its executions are gone and ids start again at 1. */
  reinstall(): void {
    this.executions.clear();
    this.nextId = 1;
  }

  /** Like `EXECUTIONS_DATA_PRUNE_MAX_COUNT`: keeps the newest N, never an unfinished one. */
  prune(options: { keepNewest: number }): void {
    const committed = [...this.executions.values()]
      .filter((e) => !e.hidden)
      .sort((a, b) => Number(b.id) - Number(a.id));
    const boundary = committed[options.keepNewest];
    if (!boundary) return;
    for (const execution of committed) {
      if (Number(execution.id) <= Number(boundary.id) && !UNPRUNABLE.has(execution.status)) {
        this.executions.delete(Number(execution.id));
      }
    }
  }

  /** The next `times` requests to this instance fail this way, before authentication. */
  failNext(failure: FakeFailure, times = 1): void {
    for (let i = 0; i < times; i++) this.failures.push(failure);
  }

  /**
   * The same API as a plain fetch handler, for serving over node:http (the npm start demo).
   * Paths are matched relative to the base URL's path.
   */
  async fetch(request: Request): Promise<Response> {
    const path = new URL(request.url).pathname.slice(
      new URL(this.baseUrl).pathname.replace(/\/$/, '').length,
    );
    if (request.method === 'GET' && path === '/api/v1/executions') return this.list(request);
    const one = /^\/api\/v1\/executions\/([^/]+)$/.exec(path);
    if (request.method === 'GET' && one?.[1])
      return this.getOne(request, decodeURIComponent(one[1]));
    if (request.method === 'DELETE' && one?.[1])
      return this.deleteOne(request, decodeURIComponent(one[1]));
    return HttpResponse.json({ message: 'Not Found' }, { status: 404 });
  }

  handlers(): RequestHandler[] {
    return [
      http.get(`${this.baseUrl}/api/v1/executions`, ({ request }) => this.list(request)),
      http.get(`${this.baseUrl}/api/v1/executions/:id`, ({ request, params }) =>
        this.getOne(request, String(params.id)),
      ),
      http.delete(`${this.baseUrl}/api/v1/executions/:id`, ({ request, params }) =>
        this.deleteOne(request, String(params.id)),
      ),
    ];
  }

  private get(id: string): FakeExecution {
    const execution = this.executions.get(Number(id));
    if (!execution) throw new Error(`the n8n emulator has no execution ${id}`);
    return execution;
  }

  /** Derives what n8n derives from the status; an explicit stoppedAt wins. */
  private settle(execution: FakeExecution, stoppedAt: string | null | undefined): void {
    const ended = ENDED.has(execution.status);
    if (stoppedAt !== undefined) {
      execution.stoppedAt = stoppedAt;
    } else if (!ended) {
      execution.stoppedAt = null;
    } else if (execution.stoppedAt === null) {
      const started = execution.startedAt ? Date.parse(execution.startedAt) : EPOCH;
      execution.stoppedAt = iso(started + 1000);
    }
    execution.finished = execution.status === 'success';
    execution.waitTill =
      execution.status === 'waiting' && execution.stoppedAt
        ? iso(Date.parse(execution.stoppedAt) + 60 * MINUTE)
        : null;
  }

  private async intercept(request: Request): Promise<Response | undefined> {
    const url = new URL(request.url);
    this.requests.push({ path: url.pathname, query: Object.fromEntries(url.searchParams) });
    const failure = this.failures.shift();
    if (failure) return this.fail(failure, request);
    return this.authenticate(request);
  }

  private fail(failure: FakeFailure, request: Request): Response | Promise<Response> {
    switch (failure.kind) {
      case 'status':
        return HttpResponse.json(failure.body ?? { message: `Injected ${failure.status}` }, {
          status: failure.status,
          headers: failure.headers,
        });
      case 'malformed':
        return typeof failure.body === 'string'
          ? new HttpResponse(failure.body, { status: 200 })
          : HttpResponse.json(failure.body as never);
      case 'network':
        return HttpResponse.error();
      case 'hang':
        return new Promise((resolve) => {
          const end = () => resolve(HttpResponse.error());
          if (request.signal.aborted) end();
          request.signal.addEventListener('abort', end, { once: true });
        });
    }
  }

  private authenticate(request: Request): Response | undefined {
    const key = request.headers.get('x-n8n-api-key');
    if (this.legacy) {
      // express-openapi-validator's security middleware, which n8n < 2.41 answers through.
      if (!key) return message(401, "'X-N8N-API-KEY' header required");
      if (key !== this.apiKey) return message(401, 'unauthorized');
      return undefined;
    }
    return key === this.apiKey ? undefined : message(401, 'Unauthorized');
  }

  private rejectUnknown(query: URLSearchParams, known: string[]): Response | undefined {
    for (const [key, value] of query) {
      if (!known.includes(key)) return message(400, `Unknown query parameter '${key}'`);
      if (this.legacy && value === '') {
        return message(400, `Empty value found for query parameter '${key}'`);
      }
    }
    return undefined;
  }

  private async list(request: Request): Promise<Response> {
    const early = await this.intercept(request);
    if (early) return early;
    const query = new URL(request.url).searchParams;
    const unknown = this.rejectUnknown(query, this.legacy ? LEGACY_LIST_PARAMS : LIST_PARAMS);
    if (unknown) return unknown;

    const queryLimit = this.parseLimit(query.get('limit'));
    if (queryLimit instanceof Response) return queryLimit;
    const status = query.get('status');
    if (status !== null && !(EXECUTION_STATUSES as readonly string[]).includes(status)) {
      return message(
        400,
        this.legacy
          ? `request/query/status must be equal to one of the allowed values: ${EXECUTION_STATUSES.join(', ')}`
          : `request/query/status Invalid enum value. Expected ${EXECUTION_STATUSES.map((s) => `'${s}'`).join(' | ')}, received '${status}'`,
      );
    }
    const startedAfter = query.get('startedAfter');
    const startedBefore = query.get('startedBefore');
    for (const [name, value] of [
      ['startedAfter', startedAfter],
      ['startedBefore', startedBefore],
    ] as const) {
      if (value !== null && !ZOD_DATETIME.test(value)) {
        return message(400, `request/query/${name} Invalid datetime`);
      }
    }
    const paging = this.resolveCursor(query.get('cursor'), queryLimit);
    if (paging instanceof Response) return paging;

    const workflowId = query.get('workflowId');
    const projectId = query.get('projectId');
    const matching = [...this.executions.values()]
      .filter((e) => !e.hidden)
      .filter((e) => matchesStatus(e.status, status))
      .filter((e) => e.status !== 'running' || (!this.legacy && status === 'running'))
      .filter((e) => workflowId === null || e.workflowId === workflowId)
      .filter((e) => projectId === null || e.projectId === projectId)
      .filter((e) => startedAfter === null || onOrAfter(e.startedAt, startedAfter))
      .filter((e) => startedBefore === null || onOrAfter(startedBefore, e.startedAt))
      .sort((a, b) => Number(b.id) - Number(a.id));
    const below = (lastId: string | undefined) =>
      lastId === undefined ? matching : matching.filter((e) => Number(e.id) < Number(lastId));

    const remaining = below(paging.lastId);
    // TypeORM drops the LIMIT clause for `take: 0`, so n8n then returns everything.
    const page = paging.limit > 0 ? remaining.slice(0, paging.limit) : remaining;
    const newLastId = page.at(-1)?.id ?? '0';
    const more = below(newLastId).length > 0;
    return HttpResponse.json({
      data: page.map(listItem),
      nextCursor: more ? encodeCursor(newLastId, paging.limit) : null,
    });
  }

  private parseLimit(raw: string | null): number | Response {
    if (this.legacy) {
      if (raw === null) return DEFAULT_LIMIT;
      const limit = Number(raw);
      if (Number.isNaN(limit)) return message(400, 'request/query/limit must be number');
      if (limit > MAX_ITEMS_PER_PAGE) {
        return message(400, `request/query/limit must be <= ${MAX_ITEMS_PER_PAGE}`);
      }
      return Math.max(0, Math.floor(limit));
    }
    if (!raw) return DEFAULT_LIMIT;
    const limit = Number.parseInt(raw, 10);
    if (Number.isNaN(limit)) {
      return message(400, 'request/query/limit Param `limit` must be a valid integer');
    }
    if (limit < 0) {
      return message(400, 'request/query/limit Param `limit` must be a non-negative integer');
    }
    return Math.min(limit, MAX_ITEMS_PER_PAGE);
  }

  private resolveCursor(
    cursor: string | null,
    queryLimit: number,
  ): { lastId?: string; limit: number } | Response {
    if (!cursor) return { limit: queryLimit };
    const invalid = message(400, 'An invalid cursor was provided');
    let decoded: unknown;
    try {
      decoded = JSON.parse(Buffer.from(cursor, 'base64').toString());
    } catch {
      return invalid;
    }
    if (typeof decoded !== 'object' || decoded === null) return invalid;
    const { lastId, limit } = decoded as { lastId?: unknown; limit?: unknown };
    const id =
      typeof lastId === 'string' || typeof lastId === 'number' ? String(lastId) : undefined;
    if (this.legacy) {
      // The legacy validCursor middleware copies both values over the query unchecked.
      return { lastId: id, limit: typeof limit === 'number' ? limit : DEFAULT_LIMIT };
    }
    return {
      lastId: id,
      limit:
        typeof limit === 'number' && Number.isInteger(limit)
          ? Math.min(Math.max(limit, 1), MAX_ITEMS_PER_PAGE)
          : queryLimit,
    };
  }

  private async getOne(request: Request, id: string): Promise<Response> {
    const early = await this.intercept(request);
    if (early) return early;
    if (this.legacy ? Number.isNaN(Number(id)) : !/^\d+$/.test(id) || Number(id) < 1) {
      return message(
        400,
        this.legacy
          ? 'request/params/id must be number'
          : 'The execution ID must be a positive integer',
      );
    }
    const query = new URL(request.url).searchParams;
    const unknown = this.rejectUnknown(query, this.legacy ? LEGACY_GET_PARAMS : GET_PARAMS);
    if (unknown) return unknown;
    const execution = this.executions.get(Number(id));
    if (!execution || execution.hidden) return message(404, 'Not Found');
    return HttpResponse.json({
      ...listItem(execution),
      createdAt: execution.startedAt ?? iso(EPOCH + Number(id) * MINUTE),
      deletedAt: null,
    });
  }

  /** `DELETE /api/v1/executions/{id}`: answers the execution, which is then gone for good. */
  private async deleteOne(request: Request, id: string): Promise<Response> {
    const early = await this.intercept(request);
    if (early) return early;
    const execution = this.executions.get(Number(id));
    if (!execution || execution.hidden) return message(404, 'Not Found');
    this.executions.delete(Number(id));
    return HttpResponse.json(listItem(execution));
  }
}

function matchesStatus(actual: ExecutionStatus, wanted: string | null): boolean {
  switch (wanted) {
    case 'error':
      return actual === 'error' || actual === 'crashed';
    case 'success':
    case 'waiting':
    case 'canceled':
    case 'running':
      return actual === wanted;
    default:
      return true;
  }
}

/** SQL semantics: a null startedAt matches neither bound. */
function onOrAfter(a: string | null, b: string | null): boolean {
  return a !== null && b !== null && Date.parse(a) >= Date.parse(b);
}

function listItem(e: FakeExecution) {
  return {
    id: e.id,
    finished: e.finished,
    mode: e.mode,
    retryOf: e.retryOf,
    retrySuccessId: e.retrySuccessId,
    status: e.status,
    startedAt: e.startedAt,
    stoppedAt: e.stoppedAt,
    workflowId: e.workflowId,
    waitTill: e.waitTill,
    // Newer n8n versions add these; clients must ignore fields they do not know.
    storedAt: 'db',
    jsonSizeBytes: 0,
    workflowVersionId: null,
  };
}
