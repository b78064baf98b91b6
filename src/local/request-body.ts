import type { IncomingMessage } from 'node:http';

/**
 * The bytes of a request body for the local stand-ins of Supabase's servers. Past `limit`
 * bytes it is refused with `tooLarge()` at once and the rest is discarded, not buffered,
 * so an oversized body cannot hold the process's memory.
 */
export function readBodyBytes(
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
