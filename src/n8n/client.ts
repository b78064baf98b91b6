import { setTimeout as delay } from 'node:timers/promises';
import pRetry, { AbortError } from 'p-retry';
import { readBodyWithin } from '../http/request-body.ts';
import { decodeCursor } from './cursor.ts';
import { type N8nExecution, type N8nPage, parseExecution, parseExecutionPage } from './schemas.ts';

export type { N8nExecution, N8nPage } from './schemas.ts';

export type N8nApiErrorKind =
  | 'unauthorized'
  | 'forbidden'
  | 'unsupported_parameter'
  | 'bad_request'
  | 'rate_limited'
  | 'server'
  | 'network'
  | 'timeout'
  | 'malformed'
  | 'too_large'
  | 'redirected';

const RETRYABLE: ReadonlySet<N8nApiErrorKind> = new Set([
  'rate_limited',
  'server',
  'network',
  'timeout',
]);

export class N8nApiError extends Error {
  readonly kind: N8nApiErrorKind;
  readonly status?: number;
  /** How long n8n (or a proxy in front of it) asked us to wait, from `Retry-After`. */
  readonly retryAfterMs?: number;

  constructor(
    kind: N8nApiErrorKind,
    message: string,
    details: { status?: number; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'N8nApiError';
    this.kind = kind;
    if (details.status !== undefined) this.status = details.status;
    if (details.retryAfterMs !== undefined) this.retryAfterMs = details.retryAfterMs;
  }

  get retryable(): boolean {
    return RETRYABLE.has(this.kind);
  }
}

export interface RetryEvent {
  /** The attempt that just failed, from 1. */
  readonly attempt: number;
  readonly error: N8nApiError;
  /** The wait before the next attempt: the backoff, or Retry-After when that is longer. */
  readonly delayMs: number;
}

export interface N8nClientOptions {
  baseUrl: string;
  apiKey: string;
  fetch?: typeof fetch;
  /** Per attempt. */
  timeoutMs?: number;
  /** Attempts after the first one, for retryable failures only. */
  retries?: number;
  minRetryDelayMs?: number;
  /** Caps the backoff and any Retry-After n8n sends. */
  maxRetryDelayMs?: number;
  /** Called before each retry, e.g. to log it. */
  onRetry?: (event: RetryEvent) => void;
  /** Waits out a Retry-After longer than the backoff; replaceable so tests need not wait. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** A response body larger than this is refused unread (a page of 250 executions is ~150 kB). */
  maxBodyBytes?: number;
}

export interface ListExecutionsParams {
  /** `nextCursor` of the previous page. The cursor carries only the position, so pass the same filters again. */
  cursor?: string;
  /** 1–250; n8n's own maximum is 250. */
  limit?: number;
  /** Inclusive, on startedAt. Needs n8n ≥ 2.41; older versions fail with `unsupported_parameter`. */
  startedAfter?: string;
  /** Inclusive, on startedAt. Needs n8n ≥ 2.41. */
  startedBefore?: string;
  projectId?: string;
  signal?: AbortSignal;
}

export interface N8nClient {
  /** One page of executions, newest id first. Running executions are not listed by n8n. */
  listExecutions(params?: ListExecutionsParams): Promise<N8nPage>;
  /** One execution, or null when n8n does not have it (never existed, pruned, or not visible to the key). */
  getExecution(id: string, opts?: { signal?: AbortSignal }): Promise<N8nExecution | null>;
}

const DEFAULTS = {
  timeoutMs: 10_000,
  retries: 3,
  minRetryDelayMs: 250,
  maxRetryDelayMs: 5_000,
  limit: 250,
  maxBodyBytes: 4 * 1024 * 1024,
};
/** Same-origin redirects followed (a proxy adding a trailing slash, http → https is not one). */
const MAX_REDIRECTS = 3;
/** The most executions n8n lists per page. */
export const MAX_PAGE_SIZE = 250;

const NOT_FOUND = Symbol('not found');

/** n8n answers this, verbatim, for a query parameter its version does not know. */
const UNKNOWN_QUERY_PARAMETER = /^Unknown query parameter '([^']+)'$/;
const SINCE_2_41 = new Set(['startedAfter', 'startedBefore']);

export const CREDENTIALS_IN_URL =
  'the n8n URL carries a user name or password: remove them (https://host, no user:pass@); the n8n API key is the only credential flowmeter sends';

export class SourceUrlError extends RangeError {
  override name = 'SourceUrlError';
}

/**
 * Accepts `https://host`, `https://host/`, `https://host/n8n/api/v1/`; returns `https://host[/n8n]`.
 * Refuses credentials in the URL: the API key is the credential, and a URL is shown in lists,
 * logs and error messages, where a password must never be.
 */
export function normalizeBaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new SourceUrlError(
      'the n8n URL is not a URL: give the instance root, e.g. https://acme.app.n8n.cloud',
    );
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new SourceUrlError(`the n8n URL must start with https:// (got ${url.protocol})`);
  }
  if (url.username !== '' || url.password !== '') throw new SourceUrlError(CREDENTIALS_IN_URL);
  url.pathname = url.pathname.replace(/\/+$/, '').replace(/\/api\/v1$/, '');
  url.search = '';
  url.hash = '';
  return url.toString().replace(/\/+$/, '');
}

/** Retry-After is either delay-seconds or an HTTP-date. */
function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** n8n's error bodies are `{ "message": "…" }`; proxies send HTML or nothing. */
function messageOf(body: string): string | undefined {
  try {
    const json: unknown = JSON.parse(body);
    if (json && typeof json === 'object' && 'message' in json && typeof json.message === 'string') {
      return json.message;
    }
  } catch {
    // Not JSON: fall through to a short excerpt.
  }
  const text = body.replace(/\s+/g, ' ').trim();
  return text === '' ? undefined : text.slice(0, 200);
}

function toUtcIso(name: string, value: string): string {
  const time = Date.parse(value);
  if (Number.isNaN(time))
    throw new RangeError(`${name} must be an ISO 8601 date-time (got "${value}")`);
  // n8n validates with zod's datetime(), which accepts only the UTC "Z" form.
  return new Date(time).toISOString();
}

/**
 * A client for the parts of n8n's public API that metering reads: the execution list
 * and single executions. Transient failures (5xx, 429, network, timeouts) are retried
 * with jittered exponential backoff; everything else fails at once with an
 * `N8nApiError` whose message tells an operator what to change.
 */
export function createN8nClient(options: N8nClientOptions): N8nClient {
  const baseUrl = normalizeBaseUrl(options.baseUrl);
  const timeoutMs = options.timeoutMs ?? DEFAULTS.timeoutMs;
  const retries = options.retries ?? DEFAULTS.retries;
  const minRetryDelayMs = options.minRetryDelayMs ?? DEFAULTS.minRetryDelayMs;
  const maxRetryDelayMs = Math.max(
    options.maxRetryDelayMs ?? DEFAULTS.maxRetryDelayMs,
    minRetryDelayMs,
  );
  const sleep = options.sleep ?? abortableSleep;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULTS.maxBodyBytes;
  const origin = new URL(baseUrl).origin;
  // An upstream may echo request headers into its error bodies; none of that reaches a log.
  const redact = (text: string) =>
    options.apiKey === '' ? text : text.replaceAll(options.apiKey, '[redacted]');
  // Looked up per call so an interceptor installed after creation (msw in tests) still applies.
  const fetchImpl: typeof fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const at = `n8n at ${baseUrl}`;

  function errorForStatus(status: number, body: string, headers: Headers): N8nApiError {
    const raw = messageOf(body);
    const message = raw === undefined ? undefined : redact(raw);
    const detail = message ? `: ${message}` : '';
    if (status === 401) {
      return new N8nApiError(
        'unauthorized',
        `${at} rejected the API key (401): check the source's key`,
        { status },
      );
    }
    if (status === 403) {
      return new N8nApiError(
        'forbidden',
        `${at} refused the API key (403): it needs the execution:list and execution:read scopes`,
        { status },
      );
    }
    if (status === 400) {
      const unknown = message?.match(UNKNOWN_QUERY_PARAMETER)?.[1];
      if (unknown) {
        const hint = SINCE_2_41.has(unknown) ? ' (n8n < 2.41)' : '';
        return new N8nApiError(
          'unsupported_parameter',
          `${at} does not support ${unknown}${hint}`,
          {
            status,
          },
        );
      }
    }
    const retryAfterMs = parseRetryAfter(headers.get('retry-after'));
    if (status === 429) {
      return new N8nApiError('rate_limited', `${at} is rate limiting requests (429)${detail}`, {
        status,
        retryAfterMs,
      });
    }
    if (status >= 500) {
      return new N8nApiError('server', `${at} failed with ${status}${detail}`, {
        status,
        retryAfterMs,
      });
    }
    if (status === 404) {
      return new N8nApiError(
        'bad_request',
        `${at} has no public API executions endpoint (404): check the base URL and that the n8n public API is enabled`,
        { status },
      );
    }
    return new N8nApiError('bad_request', `${at} rejected the request (${status})${detail}`, {
      status,
    });
  }

  /** One HTTP attempt; returns the parsed JSON body, or NOT_FOUND for an allowed 404. */
  async function attempt(url: URL, allowNotFound: boolean, caller?: AbortSignal): Promise<unknown> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = caller ? AbortSignal.any([caller, timeout]) : timeout;
    const failure = (error: unknown): unknown => {
      if (caller?.aborted) return caller.reason;
      if (timeout.aborted) {
        return new N8nApiError('timeout', `${at} did not answer within ${timeoutMs} ms`, {
          cause: error,
        });
      }
      const reason = error instanceof Error ? (error.cause ?? error) : error;
      const why = reason instanceof Error ? reason.message : String(reason);
      return new N8nApiError('network', `could not reach ${at}: ${why}`, { cause: error });
    };

    let status: number;
    let headers: Headers;
    let body: string;
    try {
      const response = await fetchFollowingSameOrigin(url, signal);
      ({ status, headers } = response);
      body = await readCapped(response);
    } catch (error) {
      if (error instanceof N8nApiError) throw error;
      throw failure(error);
    }

    if (status === 404 && allowNotFound) return NOT_FOUND;
    if (status < 200 || status >= 300) throw errorForStatus(status, body, headers);
    try {
      return JSON.parse(body) as unknown;
    } catch {
      throw new N8nApiError(
        'malformed',
        `${at} answered ${status} with a body that is not JSON: ${redact(body.slice(0, 120))}`,
        { status },
      );
    }
  }

  /**
   * Follows redirects by hand: the API key goes only to n8n's own origin. fetch would keep a
   * custom header across origins, so a redirect elsewhere would hand the key to that host.
   */
  async function fetchFollowingSameOrigin(start: URL, signal: AbortSignal): Promise<Response> {
    let url = start;
    for (let hop = 0; ; hop++) {
      const response = await fetchImpl(url, {
        headers: { 'X-N8N-API-KEY': options.apiKey, accept: 'application/json' },
        redirect: 'manual',
        signal,
      });
      if (response.status < 300 || response.status >= 400 || response.status === 304) {
        return response;
      }
      await response.body?.cancel();
      const location = response.headers.get('location');
      const next = location === null ? null : URL.parse(location, url);
      if (next === null) {
        throw new N8nApiError(
          'redirected',
          `${at} answered ${response.status} without a usable Location: check the source's URL`,
          { status: response.status },
        );
      }
      if (next.origin !== origin) {
        throw new N8nApiError(
          'redirected',
          `${at} redirected to another origin (${next.origin}); the API key is not sent there: set the source's URL to the address n8n answers on`,
          { status: response.status },
        );
      }
      if (hop >= MAX_REDIRECTS) {
        throw new N8nApiError(
          'redirected',
          `${at} redirected more than ${MAX_REDIRECTS} times: check the source's URL and the proxy in front of n8n`,
          { status: response.status },
        );
      }
      url = next;
    }
  }

  /** The body as text, refused past maxBodyBytes without reading the rest. */
  async function readCapped(response: Response): Promise<string> {
    const tooLarge = () =>
      new N8nApiError(
        'too_large',
        `${at} sent a response larger than ${maxBodyBytes} bytes; a page of executions is far smaller: check that the source's URL points at n8n and nothing in between pads its answers`,
        { status: response.status },
      );
    const bytes = await readBodyWithin(response, maxBodyBytes);
    if (bytes === undefined) throw tooLarge();
    return new TextDecoder().decode(bytes);
  }

  async function withRetries<T>(
    run: () => Promise<T>,
    caller: AbortSignal | undefined,
  ): Promise<T> {
    return pRetry(
      async () => {
        try {
          return await run();
        } catch (error) {
          if (error instanceof N8nApiError && error.retryable) throw error;
          // Anything else (4xx, malformed, a caller abort) is final: retrying cannot help.
          throw new AbortError(error instanceof Error ? error : new Error(String(error)));
        }
      },
      {
        retries,
        factor: 2,
        minTimeout: minRetryDelayMs,
        maxTimeout: maxRetryDelayMs,
        randomize: true,
        signal: caller,
        onFailedAttempt: async ({ error, attemptNumber, retriesLeft, retryDelay }) => {
          if (retriesLeft === 0 || !(error instanceof N8nApiError)) return;
          const asked = Math.min(error.retryAfterMs ?? 0, maxRetryDelayMs);
          options.onRetry?.({
            attempt: attemptNumber,
            error,
            delayMs: Math.max(retryDelay, asked),
          });
          // p-retry waits retryDelay after this; top it up to what Retry-After asked for.
          if (asked > retryDelay) await sleep(asked - retryDelay, caller);
        },
      },
    );
  }

  return {
    async listExecutions(params = {}) {
      const limit = params.limit ?? DEFAULTS.limit;
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
        throw new RangeError(`limit must be an integer from 1 to ${MAX_PAGE_SIZE} (got ${limit})`);
      }
      const url = new URL(`${baseUrl}/api/v1/executions`);
      url.searchParams.set('limit', String(limit));
      if (params.cursor) url.searchParams.set('cursor', params.cursor);
      if (params.startedAfter) {
        url.searchParams.set('startedAfter', toUtcIso('startedAfter', params.startedAfter));
      }
      if (params.startedBefore) {
        url.searchParams.set('startedBefore', toUtcIso('startedBefore', params.startedBefore));
      }
      if (params.projectId) url.searchParams.set('projectId', params.projectId);

      return withRetries(async () => {
        const parsed = parseExecutionPage(await attempt(url, false, params.signal));
        if (!parsed.ok) {
          throw new N8nApiError(
            'malformed',
            `${at} sent an unreadable executions page: ${parsed.message}`,
          );
        }
        // n8n lets the cursor's own limit win over the query's (a walk resumed with another
        // page size), but never pages more than 250.
        const allowed = Math.min(
          Math.max(limit, decodeCursor(params.cursor).limit ?? 0),
          MAX_PAGE_SIZE,
        );
        if (parsed.page.data.length > allowed) {
          throw new N8nApiError(
            'malformed',
            `${at} sent ${parsed.page.data.length} executions for a page of at most ${allowed}: something between flowmeter and n8n rewrites its answers`,
          );
        }
        return parsed.page;
      }, params.signal);
    },

    async getExecution(id, opts = {}) {
      if (!/^\d+$/.test(id))
        throw new RangeError(`execution id must be a string of digits (got "${id}")`);
      const url = new URL(`${baseUrl}/api/v1/executions/${id}`);
      return withRetries(async () => {
        const json = await attempt(url, true, opts.signal);
        if (json === NOT_FOUND) return null;
        const parsed = parseExecution(json);
        if (!parsed.ok) {
          throw new N8nApiError(
            'malformed',
            `${at} sent an unreadable execution ${id}: ${parsed.message}`,
          );
        }
        return parsed.execution;
      }, opts.signal);
    },
  };
}

async function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await delay(ms, undefined, { signal });
  } catch (error) {
    throw signal?.aborted ? signal.reason : error;
  }
}
