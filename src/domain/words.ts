/** "1 source", "3 sources" ("-1 source"); `many` where the plural is not the word plus s. */
export const plural = (n: number, one: string, many = `${one}s`) =>
  `${n.toLocaleString('en-US')} ${Math.abs(n) === 1 ? one : many}`;
