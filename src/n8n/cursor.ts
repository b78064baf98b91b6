/** What n8n's cursor holds; a part that is missing or not a positive integer is null. */
export interface CursorContent {
  /** The id the next page starts below. */
  lastId: number | null;
  /** The page size n8n lets win over the query's when the walk resumes. */
  limit: number | null;
}

/** Reads n8n's cursor, base64 JSON of {lastId, limit}; anything else holds nothing. */
export function decodeCursor(cursor: string | null | undefined): CursorContent {
  const nothing = { lastId: null, limit: null };
  if (!cursor) return nothing;
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, 'base64').toString('utf8'));
  } catch {
    return nothing;
  }
  if (typeof decoded !== 'object' || decoded === null) return nothing;
  const { lastId, limit } = decoded as { lastId?: unknown; limit?: unknown };
  // n8n writes lastId as a string.
  const id = Number(lastId);
  return {
    lastId: Number.isSafeInteger(id) && id > 0 ? id : null,
    limit: typeof limit === 'number' && Number.isInteger(limit) && limit > 0 ? limit : null,
  };
}
