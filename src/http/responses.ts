/**
 * One error body shape for every endpoint, and the closed set of codes it may carry,
 * each with its HTTP status. Handlers never pick a status themselves.
 */
export const ERROR_STATUS = {
  invalid_request: 400,
  unauthorized: 401,
  payment_required: 402,
  not_found: 404,
  unknown_tenant: 404,
  method_not_allowed: 405,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unavailable: 503,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: unknown };
}

export type Result<T, C extends ErrorCode = ErrorCode> =
  | { ok: true; value: T }
  | { ok: false; error: { code: C; message: string; details?: unknown } };

export const ok = <T>(value: T): Result<T, never> => ({ ok: true, value });
export const fail = <C extends ErrorCode>(
  code: C,
  message: string,
  details?: unknown,
): Result<never, C> => ({
  ok: false,
  error: { code, message, ...(details === undefined ? {} : { details }) },
});

export function errorResponse(
  code: ErrorCode,
  message: string,
  details?: unknown,
  headers: Record<string, string> = {},
): Response {
  const body: ErrorBody = {
    error: { code, message, ...(details === undefined ? {} : { details }) },
  };
  return Response.json(body, { status: ERROR_STATUS[code], headers });
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads a JSON body of at most `maxBytes`, as an error Response when it cannot. */
export async function readJsonBody(
  req: Request,
  maxBytes: number,
): Promise<{ ok: true; body: unknown } | { ok: false; response: Response }> {
  const type = req.headers.get('content-type') ?? '';
  if (!/^application\/json\b/i.test(type)) {
    return {
      ok: false,
      response: errorResponse(
        'unsupported_media_type',
        'Send the body as JSON with Content-Type: application/json',
      ),
    };
  }
  const declared = Number(req.headers.get('content-length') ?? 0);
  if (declared > maxBytes) {
    return {
      ok: false,
      response: errorResponse('payload_too_large', `The body may be at most ${maxBytes} bytes`),
    };
  }
  const bytes = await req.arrayBuffer();
  if (bytes.byteLength > maxBytes) {
    return {
      ok: false,
      response: errorResponse('payload_too_large', `The body may be at most ${maxBytes} bytes`),
    };
  }
  let text: string;
  try {
    // Strict: bytes that are not UTF-8 are refused, not turned into U+FFFD and let through.
    text = strictUtf8.decode(bytes);
  } catch {
    return {
      ok: false,
      response: errorResponse('invalid_request', 'The body is not valid UTF-8'),
    };
  }
  try {
    return { ok: true, body: JSON.parse(text) };
  } catch {
    return { ok: false, response: errorResponse('invalid_request', 'The body is not valid JSON') };
  }
}
