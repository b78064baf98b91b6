/*
 * How the Stripe ledger's rows become columns and cells, without knowing every field: a
 * kind of entry added later shows as it comes. Pure, so it is unit-tested.
 */

import type { Formatter } from '../format.ts';

const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

// What a person reads first; the long identifier last. Fields not named here (a kind of
// entry added later brings its own) sit between the two.
const FIRST = ['id', 'status', 'value', 'period_start', 'period_end', 'attempts', 'last_error'];
const LAST = ['identifier'];

/** A column per field any row has: every field shows, whatever kinds of entry arrive. */
export function ledgerColumns(rows: ReadonlyArray<Record<string, unknown>>): string[] {
  const present = new Set<string>();
  for (const row of rows) for (const key of Object.keys(row)) present.add(key);
  const rest = [...present].filter((k) => !FIRST.includes(k) && !LAST.includes(k));
  return [...FIRST.filter((k) => present.has(k)), ...rest, ...LAST.filter((k) => present.has(k))];
}

export const columnLabel = (key: string) => {
  const words = key.replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
};

export function ledgerCell(value: unknown, f: Formatter): string {
  if (value === null || value === undefined || value === '') return '—';
  if (typeof value === 'number') return f.count(value);
  if (typeof value === 'string' && ISO_INSTANT.test(value)) return f.dateTime(value);
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}
