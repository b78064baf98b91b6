import { type Dispatcher, request } from 'undici';

const BODYLESS_STATUSES = new Set([204, 205, 304]);

/**
 * The fetch supabase-js uses for server code: undici's request API behind fetch's
 * signature. Node's global fetch is undici too, but wraps every request and response in
 * WHATWG streams; for the small JSON bodies of RPC calls that costs about five times the
 * CPU of the request itself (measured in bench/enforce.ts), and enforcement makes one such
 * call before every workflow run. Connections are kept alive by undici's global
 * dispatcher.
 *
 * Only what supabase-js sends takes the fast path: a URL and a string body or none.
 * Anything else (a Request object, a stream or form body) goes to the global fetch.
 * Unlike fetch, redirects are not followed: Supabase's REST endpoints never redirect.
 */
export async function rpcFetch(
  input: string | URL | Request,
  init?: RequestInit,
): Promise<Response> {
  if (input instanceof Request || (init?.body != null && typeof init.body !== 'string')) {
    return fetch(input, init);
  }
  // supabase-js passes a Headers object; undici takes any iterable of name-value pairs.
  const headers = init?.headers instanceof Headers ? init.headers : new Headers(init?.headers);
  let answer: Dispatcher.ResponseData;
  try {
    answer = await request(input, {
      method: (init?.method ?? 'GET') as Dispatcher.HttpMethod,
      headers,
      body: init?.body ?? null,
      signal: init?.signal ?? null,
    });
  } catch (error) {
    if (error instanceof Error && error.name === 'AbortError') throw error;
    // What fetch throws, so callers that recognise network failures keep doing so.
    throw new TypeError('fetch failed', { cause: error });
  }
  // The bytes as they came: the caller decodes them once.
  const body = await answer.body.arrayBuffer();
  const responseHeaders: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(answer.headers)) {
    if (Array.isArray(value)) for (const v of value) responseHeaders.push([name, v]);
    else if (value !== undefined) responseHeaders.push([name, value]);
  }
  const bodyless = init?.method === 'HEAD' || BODYLESS_STATUSES.has(answer.statusCode);
  return new Response(bodyless ? null : body, {
    status: answer.statusCode,
    headers: responseHeaders,
  });
}

/** What a call that got no answer in time rejects with; supabase-js reads it as status 0. */
export class DatabaseTimeout extends Error {
  override readonly name = 'TimeoutError';

  constructor(timeoutMs: number) {
    super(`no answer from the database within ${timeoutMs} ms`);
  }
}

/**
 * `fetchImpl` with a deadline on every request, its body included: a database (or a
 * PostgREST) that hangs gets the call cut after `timeoutMs`, which supabase-js answers as
 * status 0 and callers read as unreachable. The caller's own signal still applies. The
 * request is also raced against the deadline, so a transport that ignores the signal cannot
 * hold the caller either.
 */
export function withDeadline(fetchImpl: typeof fetch, timeoutMs: number): typeof fetch {
  return async (input, init) => {
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = init?.signal ? AbortSignal.any([init.signal, deadline]) : deadline;
    let onDeadline = () => {};
    const timedOut = new Promise<never>((_, reject) => {
      onDeadline = () => reject(new DatabaseTimeout(timeoutMs));
      deadline.addEventListener('abort', onDeadline, { once: true });
    });
    try {
      return await Promise.race([fetchImpl(input, { ...init, signal }), timedOut]);
    } catch (error) {
      if (deadline.aborted) throw new DatabaseTimeout(timeoutMs);
      throw error;
    } finally {
      deadline.removeEventListener('abort', onDeadline);
    }
  };
}
