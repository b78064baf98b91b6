import { z } from 'zod';
import { parseOutside } from '../domain/parse-outside.ts';
import type { ErrorCode, Result } from '../domain/result.ts';
import { readBodyWithin } from './request-body.ts';

/**
 * The one place a failure's code becomes an HTTP status, and the one error body shape every
 * endpoint answers with. Handlers never pick a status themselves. Beside the domain's codes,
 * the transport's own refusals (method, body size, media type).
 */
export const ERROR_STATUS = {
  invalid_request: 400,
  unauthorized: 401,
  not_found: 404,
  unknown_tenant: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  upstream_failed: 502,
  unavailable: 503,
  internal: 500,
} as const satisfies Record<ErrorCode, number> & Record<string, number>;

export type HttpErrorCode = keyof typeof ERROR_STATUS;

export const errorBodySchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.unknown().optional(),
  }),
});

export interface ErrorBody {
  error: { code: HttpErrorCode; message: string; details?: unknown };
}

/** A service's answer as a response: its value as JSON (200), or its failure's status and body. */
export function resultResponse<T>(result: Result<T, HttpErrorCode>): Response {
  if (result.ok) return Response.json(result.value);
  const { code, message, details } = result.error;
  return errorResponse(code, message, details);
}

export function errorResponse(
  code: HttpErrorCode,
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

type Read<T> = { ok: true; value: T } | { ok: false; response: Response };

/**
 * The request body of a JSON endpoint: JSON of at most `maxBytes` that the endpoint's schema
 * accepts, or the error Response to answer. A body the schema refuses is invalid_request
 * with `invalid`, and with `fieldDetails` each problem's field and message as details.
 */
export async function readJsonRequest<T>(
  req: Request,
  spec: { maxBytes: number; schema: z.ZodType<T>; invalid: string; fieldDetails?: boolean },
): Promise<Read<T>> {
  const body = await readJsonBody(req, spec.maxBytes);
  if (!body.ok) return body;
  const parsed = parseOutside(spec.schema, body.value);
  if (parsed.success) return { ok: true, value: parsed.data };
  const details = spec.fieldDetails
    ? parsed.error.issues.map((i) => ({ field: i.path.join('.') || '(body)', message: i.message }))
    : undefined;
  return { ok: false, response: errorResponse('invalid_request', spec.invalid, details) };
}

/** Reads a JSON body of at most `maxBytes`, as an error Response when it cannot. */
async function readJsonBody(req: Request, maxBytes: number): Promise<Read<unknown>> {
  const type = req.headers.get('content-type') ?? '';
  // application/json, with parameters or not; not application/json-patch+json and the like.
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    return {
      ok: false,
      response: errorResponse(
        'unsupported_media_type',
        'Send the body as JSON with Content-Type: application/json',
      ),
    };
  }
  const bytes = await readBodyWithin(req, maxBytes);
  if (bytes === undefined) {
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
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, response: errorResponse('invalid_request', 'The body is not valid JSON') };
  }
}
