import type { IncomingMessage } from 'node:http';

/**
 * The bytes of a request body for the local stand-ins of Supabase's servers. Past `limit`
 * bytes it is refused with `tooLarge()` at once and the rest is discarded, not buffered,
 * so an oversized body cannot hold the process's memory.
 */
function readBodyBytes(
  req: IncomingMessage,
  limit: number,
  tooLarge: () => Error,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () =>
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)),
    );
    req.on('error', reject);
  });
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A request body as text: a declared Content-Length above `limit` is refused before a byte
 * is read, and bytes that are not UTF-8 are refused rather than replaced, so what is parsed
 * is what was sent.
 */
export async function readBodyText(
  req: IncomingMessage,
  limit: number,
  refuse: { tooLarge: () => Error; notUtf8: () => Error },
): Promise<string> {
  if (Number(req.headers['content-length'] ?? 0) > limit) throw refuse.tooLarge();
  const body = await readBodyBytes(req, limit, refuse.tooLarge);
  try {
    return strictUtf8.decode(body);
  } catch {
    throw refuse.notUtf8();
  }
}
