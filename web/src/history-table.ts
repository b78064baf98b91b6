import { html, nothing } from 'lit';
import type { UsagePeriod } from '../../src/usage-client/index.ts';
import type { Formatter } from './format.ts';

/**
 * The billing periods as the tenant's dashboard lists them; the operator console shows the
 * same. Corrected: executions the operator added or took off after the fact.
 */
export const historyTable = (rows: UsagePeriod[], f: Formatter) =>
  html`<div class="table-wrap"><table class="history">
    <thead><tr><th scope="col">Period</th><th scope="col" class="num">Used</th><th scope="col" class="num">Quota</th>
      <th scope="col" class="num">Overage</th><th scope="col" class="num">Reported to Stripe</th><th scope="col" class="num">Pending</th>
      <th scope="col" class="num">Late</th><th scope="col" class="num">Corrected</th></tr></thead>
    <tbody>${rows.map(
      (p) => html`<tr data-period=${p.periodStart}>
        <th scope="row">${f.period(p.periodStart, p.periodEnd)}${p.isCurrent ? html` <span class="tag">current</span>` : nothing}</th>
        <td class="num" data-metric="used">${f.count(p.used)}</td>
        <td class="num">${p.quota === null ? 'Unlimited' : f.count(p.quota)}</td>
        <td class="num" data-metric="overage">${f.count(p.overageUnits)}</td>
        <td class="num" data-metric="reported">${f.count(p.reportedToStripe)}</td>
        <td class="num" data-metric="pending">${f.count(p.pendingToStripe)}</td>
        <td class="num" data-metric="late">${f.count(p.late)}</td>
        <td class="num" data-metric="corrected">${p.corrected === 0 ? '—' : `${p.corrected > 0 ? '+' : ''}${f.count(p.corrected)}`}</td>
      </tr>`,
    )}</tbody></table></div>`;
