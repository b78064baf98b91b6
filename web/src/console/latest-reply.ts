/**
 * For calls whose replies replace one another on a page. A reply that arrives after a later
 * call was made belongs to what the page showed before (another tenant, an older reload) and
 * comes back as `undefined`, so it cannot overwrite the newer page; `onStale` hears of each
 * such reply. No DOM, so it is unit-tested.
 */
export function latestReplyOnly(onStale: () => void = () => {}) {
  let latest = 0;
  return async <T>(call: () => Promise<T>): Promise<T | undefined> => {
    const mine = ++latest;
    const reply = await call();
    if (mine === latest) return reply;
    onStale();
    return undefined;
  };
}

/** The event a console page sends when it drops a reply that came too late to be shown. */
export const STALE_REPLY_EVENT = 'flowmeter-stale-reply';

export const announceStaleReply = (element: EventTarget) => () =>
  element.dispatchEvent(new Event(STALE_REPLY_EVENT, { bubbles: true, composed: true }));
