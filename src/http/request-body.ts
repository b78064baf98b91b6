/**
 * A body, at most `maxBytes` of it — a request to our endpoints, or an answer of a peer
 * (n8n): a declared Content-Length above that is refused before a byte is read, and a body
 * that grows past it (sent without one, or chunked) is cut there; either way its stream is
 * cancelled, so an oversized body never sits in memory whole. undefined when too large.
 */
export async function readBodyWithin(
  message: Request | Response,
  maxBytes: number,
): Promise<Uint8Array | undefined> {
  if (Number(message.headers.get('content-length') ?? 0) > maxBytes) {
    await message.body?.cancel().catch(() => {});
    return undefined;
  }
  const reader = message.body?.getReader();
  if (!reader) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}
