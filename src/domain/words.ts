/** "1 source", "3 sources"; `many` where the plural is not the word plus s. */
export const plural = (n: number, one: string, many = `${one}s`) =>
  `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;
