/**
 * For calls whose replies replace one another on a page. A reply that arrives after a later
 * call was made belongs to what the page showed before (another tenant, an older reload) and
 * comes back as `undefined`, so it cannot overwrite the newer page. No DOM, so it is unit-tested.
 */
export function latestReplyOnly() {
  let latest = 0;
  return async <T>(call: () => Promise<T>): Promise<T | undefined> => {
    const mine = ++latest;
    const reply = await call();
    return mine === latest ? reply : undefined;
  };
}
