import { html, nothing } from 'lit';
import type { UsagePeriod } from '../../src/usage-client/index.ts';
import type { Formatter } from './format.ts';

/**
 * The billing periods as the tenant's dashboard lists them; the operator console shows the
 * same. Corrected: executions the operator added or took off after the fact.
 */
export const historyTable = (rows: UsagePeriod[], f: Formatter) =>
  html`<div class="table-wrap"><table class="history">
    <thead><tr><th scope="col">Period</th><th scope="col">Used</th><th scope="col">Quota</th>
      <th scope="col">Overage</th><th scope="col">Reported to Stripe</th><th scope="col">Pending</th>
      <th scope="col">Late</th><th scope="col">Corrected</th></tr></thead>
    <tbody>${rows.map(
      (p) => html`<tr data-period=${p.periodStart}>
        <th scope="row">${f.period(p.periodStart, p.periodEnd)}${p.isCurrent ? html` <span class="tag">current</span>` : nothing}</th>
        <td data-metric="used">${f.count(p.used)}</td>
        <td>${p.quota === null ? 'Unlimited' : f.count(p.quota)}</td>
        <td data-metric="overage">${f.count(p.overageUnits)}</td>
        <td data-metric="reported">${f.count(p.reportedToStripe)}</td>
        <td data-metric="pending">${f.count(p.pendingToStripe)}</td>
        <td data-metric="late">${f.count(p.late)}</td>
        <td data-metric="corrected">${p.corrected === 0 ? '—' : `${p.corrected > 0 ? '+' : ''}${f.count(p.corrected)}`}</td>
      </tr>`,
    )}</tbody></table></div>`;
