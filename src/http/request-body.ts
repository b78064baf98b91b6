/**
 * A request's body, at most `maxBytes` of it: a declared Content-Length above that is
 * refused before a byte is read, and a body that grows past it (sent without one, or
 * chunked) is cut there and its stream cancelled, so an oversized body never sits in
 * memory whole. undefined when it is too large.
 */
export async function readBodyWithin(
  req: Request,
  maxBytes: number,
): Promise<Uint8Array | undefined> {
  if (Number(req.headers.get('content-length') ?? 0) > maxBytes) return undefined;
  const reader = req.body?.getReader();
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
