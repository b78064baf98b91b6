import { z } from 'zod';

/**
 * `schema.safeParse(value)` for what comes from outside — a request body, an n8n page, a
 * Stripe event or answer — that never throws. zod runs a length check (`min`, `max`,
 * `length`) even on a value its type check refused, when that value has a `length`; one
 * that cannot become a number, as JSON can write it ({"name": {"length": {"toString": ""}}}),
 * makes the comparison throw a TypeError out of safeParse. Whatever throws is refused like
 * any other wrong value, at the place that holds such a `length` when there is one.
 */
export function parseOutside<T>(schema: z.ZodType<T>, value: unknown): z.ZodSafeParseResult<T> {
  try {
    return schema.safeParse(value);
  } catch {
    return z
      .custom<T>(() => false, {
        error: 'holds a value of the wrong type',
        path: unreadableLength(value) ?? [],
      })
      .safeParse(value);
  }
}

/** How many values unreadableLength looks at, at most: a body is bounded, this is too. */
const MOST_VALUES = 100_000;

/** The path to the first object whose `length` no comparison can read, breadth first. */
function unreadableLength(value: unknown): PropertyKey[] | undefined {
  // Each value with its parent's place and its key: a path is built only for the one found.
  const queue: Array<{ at: unknown; parent: number; key: PropertyKey }> = [
    { at: value, parent: -1, key: '' },
  ];
  const pathTo = (index: number) => {
    const path: PropertyKey[] = [];
    for (let i = index; i > 0; i = (queue[i] as (typeof queue)[number]).parent) {
      path.unshift((queue[i] as (typeof queue)[number]).key);
    }
    return path;
  };
  for (let seen = 0; seen < queue.length; seen++) {
    const { at } = queue[seen] as (typeof queue)[number];
    if (typeof at !== 'object' || at === null) continue;
    if (!Array.isArray(at) && 'length' in at) {
      try {
        Number((at as { length: unknown }).length);
      } catch {
        return pathTo(seen);
      }
    }
    for (const [key, child] of Object.entries(at)) {
      if (queue.length >= MOST_VALUES) break;
      queue.push({ at: child, parent: seen, key: Array.isArray(at) ? Number(key) : key });
    }
  }
  return undefined;
}
