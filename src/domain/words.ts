/**
 * The noun that goes with a count: `one` for 1 (and -1), else `many`, the word plus s unless
 * given. The words are English, so English's rule applies whatever the number's locale.
 */
export const noun = (n: number, one: string, many = `${one}s`) => (Math.abs(n) === 1 ? one : many);

/** "1 source", "3 sources" ("-1 source"), the number as en-US writes it. */
export const plural = (n: number, one: string, many?: string) =>
  `${n.toLocaleString('en-US')} ${noun(n, one, many)}`;
