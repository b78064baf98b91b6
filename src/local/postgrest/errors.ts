/** PostgREST's error body: PostgreSQL's fields, or PGRST* codes for its own errors. */
export interface PostgrestErrorBody {
  code: string;
  message: string;
  details: string | null;
  hint: string | null;
}

export class PostgrestError extends Error {
  readonly status: number;
  readonly body: PostgrestErrorBody;
  readonly headers: Record<string, string>;

  constructor(status: number, body: PostgrestErrorBody, headers: Record<string, string> = {}) {
    super(body.message);
    this.status = status;
    this.body = body;
    this.headers = headers;
  }
}

export const postgrestError = (
  status: number,
  code: string,
  message: string,
  details: string | null = null,
  hint: string | null = null,
  headers: Record<string, string> = {},
) => new PostgrestError(status, { code, message, details, hint }, headers);

const prefixStatus: ReadonlyArray<readonly [string, number]> = [
  ['08', 503],
  ['09', 500],
  ['0L', 403],
  ['0P', 403],
  ['25', 500],
  ['28', 403],
  ['2D', 500],
  ['38', 500],
  ['39', 500],
  ['3B', 500],
  ['40', 500],
  ['53', 503],
  // Program limits (nesting too deep for the stack, too many array dimensions) are reached
  // by the request's own values: the caller's to fix. PostgREST answers 500 here.
  ['54', 400],
  ['55', 500],
  ['57', 500],
  ['58', 500],
  ['F0', 500],
  ['HV', 500],
  ['P0', 500],
  ['XX', 500],
];

const exactStatus: Readonly<Record<string, number>> = {
  '23503': 409,
  '23505': 409,
  '25006': 405,
  '53400': 500,
  P0001: 400,
  '42883': 404,
  '42P01': 404,
};

/**
 * HTTP status for a PostgreSQL SQLSTATE, as PostgREST maps it. `42501` (insufficient
 * privilege) is 403 for an authenticated request and 401 for an anonymous one, and
 * `PTxyz` is the caller's own choice of status xyz.
 */
export function statusForSqlState(sqlState: string, authenticated: boolean): number {
  const custom = /^PT(\d{3})$/.exec(sqlState);
  if (custom) return Number(custom[1]);
  if (sqlState === '42501') return authenticated ? 403 : 401;
  const exact = exactStatus[sqlState];
  if (exact !== undefined) return exact;
  const prefix = prefixStatus.find(([p]) => sqlState.startsWith(p));
  return prefix ? prefix[1] : 400;
}
