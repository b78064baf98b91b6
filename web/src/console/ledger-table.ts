import { html } from 'lit';
import type { Formatter } from '../format.ts';

const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

/** A column per field, in the order the rows bring them: a kind of entry added later shows as it comes. */
export function ledgerColumns(rows: ReadonlyArray<Record<string, unknown>>): string[] {
  const columns = new Set<string>();
  for (const row of rows) for (const key of Object.keys(row)) columns.add(key);
  return [...columns];
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

export function ledgerTable(rows: ReadonlyArray<Record<string, unknown>>, f: Formatter) {
  const columns = ledgerColumns(rows);
  // Focusable: the table is wider than the page, and a keyboard must be able to scroll it.
  return html`<div class="table-wrap" tabindex="0" role="region" aria-label="Meter reports"><table class="ledger">
    <thead><tr>${columns.map((c) => html`<th scope="col">${columnLabel(c)}</th>`)}</tr></thead>
    <tbody>${rows.map(
      (row) =>
        html`<tr data-report=${String(row.id ?? '')} data-status=${String(row.status ?? '')}>${columns.map(
          (c) =>
            c === 'status'
              ? html`<td data-field=${c}><span class="badge status-${String(row[c])}">${ledgerCell(row[c], f)}</span></td>`
              : html`<td data-field=${c} class=${typeof row[c] === 'number' ? 'num' : ''}>${ledgerCell(row[c], f)}</td>`,
        )}</tr>`,
    )}</tbody></table></div>`;
}
