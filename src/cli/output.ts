/*
 * How commands print: tables for people, `--json` for scripts (one JSON document on
 * stdout, nothing else there). No colours in tables, so output piped to a file or a pager
 * stays readable.
 */

import Table from 'cli-table3';
import { formatMoney } from '../domain/money.ts';
import type { Logger } from '../observability/logger.ts';
import type { CliIo } from './context.ts';

export type Cell = string | number | boolean | null | undefined;

const plain = { head: [], border: [] };
/** Box drawing without a rule between rows: denser, and still clear. */
const chars = { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' };

export function renderTable(head: string[], rows: Cell[][]): string {
  const table = new Table({ head, style: plain, chars });
  for (const row of rows) table.push(row.map(cell));
  // A rule under the one-line head only: ┌─┬─┐ becomes ├─┼─┤.
  const [top = '', headLine = '', ...body] = table.toString().split('\n');
  const rule = top.replace('┌', '├').replaceAll('┬', '┼').replace('┐', '┤');
  return [top, headLine, rule, ...body].join('\n');
}

/** One record, a field per line. */
export function renderRecord(fields: Array<[string, Cell]>): string {
  const table = new Table({ style: plain, chars });
  for (const [key, value] of fields) table.push({ [key]: cell(value) });
  return table.toString();
}

export function printJson(io: CliIo, value: unknown): void {
  io.out(JSON.stringify(value, null, 2));
}

function cell(value: Cell): string {
  if (value === null || value === undefined || value === '') return '–';
  return String(value);
}

/** 1234567 → "1,234,567"; null → "–" (unlimited, unknown). */
export const count = (n: number | null | undefined) =>
  n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US');

/** An amount in the currency's minor unit (cents) as "€12.35". */
export const money = (minorUnits: number, currency: string) =>
  formatMoney(minorUnits, currency, 'en-US');

/** An ISO timestamp as "2026-11-23 14:05:09Z", short and sortable. */
export const time = (iso: string | null | undefined) =>
  iso ? `${new Date(iso).toISOString().slice(0, 19).replace('T', ' ')}Z` : '–';

/** Seconds as "4s", "12m 5s", "3h 20m", "2d 4h". */
export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return '–';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** Long texts (errors) cut for a table cell; --json has them whole. */
export const short = (text: string | null | undefined, max = 60) =>
  !text ? '' : text.length > max ? `${text.slice(0, max - 1)}…` : text;

/**
 * The services' logger for a person at a terminal: warnings and errors that carry an error
 * message, one line each; the rest is left out, since each command prints its own result
 * (reconciliation findings, for one, are logged and printed).
 */
export function cliLogger(write: (line: string) => void): Logger {
  const line = (fields: object, message?: string) => {
    const error = (fields as { error?: unknown }).error;
    if (typeof error === 'string') write(`${message ?? 'failed'}: ${error}`);
  };
  const logger: Logger = {
    debug() {},
    info() {},
    warn: line,
    error: line,
    child: () => logger,
  };
  return logger;
}

/** A source's error without its own URL, which the table already shows. */
export const sourceError = (error: string | null | undefined, baseUrl: string, max = 60) =>
  short(error?.replaceAll(` at ${baseUrl}`, ''), max);
