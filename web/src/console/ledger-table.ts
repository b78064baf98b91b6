import { html } from 'lit';
import type { Formatter } from '../format.ts';
import { columnLabel, ledgerCell, ledgerColumns } from './ledger-columns.ts';

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
