import { html, nothing } from 'lit';
import { getOverview, type Overview } from '../../../src/operator-client/index.ts';
import { ConsolePage, levelBadge } from './page-state.ts';
import { consoleHref } from './route.ts';

type Ranked = Overview['top_by_usage'][number];

/** The whole system at a glance: tenants, this period's executions and trend, revenue, who to look at. */
export class ConsoleOverview extends ConsolePage<Overview> {
  override connectedCallback(): void {
    super.connectedCallback();
    void this.refresh();
  }

  protected override read() {
    return getOverview(this.client, { topRows: 5, maxNearLimit: 10 });
  }

  protected override render() {
    return html`<h1 class="page-title" tabindex="-1">Overview</h1>
      ${this.renderAnswer((o) => this.#ready(o))}`;
  }

  #ready(o: Overview) {
    const f = this.format;
    const change = o.trend.billable_change_percent;
    return html`
      <p class="muted page-sub">Every tenant in its current billing period · as of
        <time datetime=${o.generated_at}>${f.dateTime(o.generated_at)}</time></p>
      <div class="stat-grid">
        <section class="card stat" aria-labelledby="stat-tenants">
          <h2 id="stat-tenants">Tenants</h2>
          <p class="big" data-metric="tenants">${f.count(o.tenants)}</p>
          <p class="muted">${f.count(o.near_limit.total)} at or near their limit</p>
        </section>
        <section class="card stat" aria-labelledby="stat-executions">
          <h2 id="stat-executions">Executions this period</h2>
          <p class="big" data-metric="executions-total">${f.count(o.executions.total)}</p>
          <p class="muted"><span data-metric="executions-billable">${f.count(o.executions.billable)}</span> billable ·
            ${f.count(o.executions.reserved)} reserved</p>
        </section>
        <section class="card stat" aria-labelledby="stat-trend">
          <h2 id="stat-trend">Billable vs. previous period</h2>
          <p class="big ${change === null ? '' : change >= 0 ? 'up' : 'down'}" data-metric="trend">
            ${change === null ? '—' : `${change > 0 ? '+' : ''}${f.percent(change)}`}</p>
          <p class="muted">${f.count(o.trend.billable)} so far against ${f.count(o.trend.previous_billable)}
            on the same days of the previous period</p>
        </section>
        ${o.revenue.map(
          (
            r,
          ) => html`<section class="card stat" aria-labelledby="stat-revenue-${r.currency}" data-currency=${r.currency}>
            <h2 id="stat-revenue-${r.currency}">Revenue (${r.currency.toUpperCase()})</h2>
            <p class="big" data-metric="recurring">${f.money(r.recurring_amount, r.currency)}</p>
            <p class="muted">recurring · <span data-metric="overage-amount">${f.money(r.estimated_overage_amount, r.currency)}</span>
              estimated overage (${f.counted(r.overage_units, 'execution')})${
                r.unpriced_tenants > 0
                  ? html` · ${f.counted(r.unpriced_tenants, 'paying tenant')} on a plan without a known price`
                  : nothing
              }</p>
          </section>`,
        )}
      </div>
      <div class="panel-grid even">
        <section class="card" aria-labelledby="by-plan">
          <h2 id="by-plan">Tenants by plan</h2>
          ${this.#countTable(
            'Plan',
            o.tenants_by_plan.map((p) => ({ key: p.plan_id, label: p.plan_name, n: p.tenants })),
            o.tenants,
          )}
        </section>
        <section class="card" aria-labelledby="by-status">
          <h2 id="by-status">Tenants by subscription status</h2>
          ${this.#countTable(
            'Status',
            o.tenants_by_status.map((s) => ({
              key: s.subscription_status,
              label: s.subscription_status,
              n: s.tenants,
            })),
            o.tenants,
          )}
        </section>
      </div>
      <div class="panel-grid even">
        <section class="card" aria-labelledby="top-usage">
          <h2 id="top-usage">Top tenants by usage</h2>
          ${this.#rankTable(o.top_by_usage, 'top-usage', 'No usage in this period yet.')}
        </section>
        <section class="card" aria-labelledby="top-share">
          <h2 id="top-share">Top tenants by share of quota</h2>
          ${this.#rankTable(o.top_by_quota_share, 'top-share', 'No tenant with a quota has usage yet.')}
        </section>
      </div>
      <section class="card" aria-labelledby="near-limit">
        <h2 id="near-limit">At or near their limit (${f.count(o.near_limit.total)})</h2>
        ${this.#rankTable(o.near_limit.tenants, 'near-limit', 'No tenant is near its limit.')}
      </section>`;
  }

  #countTable(what: string, rows: Array<{ key: string; label: string; n: number }>, total: number) {
    const f = this.format;
    return html`<table class="counts">
      <thead><tr><th scope="col">${what}</th><th scope="col" class="num">Tenants</th><th scope="col"><span class="visually-hidden">Share</span></th></tr></thead>
      <tbody>${rows.map(
        (
          r,
        ) => html`<tr data-key=${r.key}><th scope="row">${r.label}</th><td class="num" data-metric="tenants">${f.count(r.n)}</td>
          <td class="bar-cell"><span class="bar" style="width:${total ? (100 * r.n) / total : 0}%"></span></td></tr>`,
      )}</tbody></table>`;
  }

  #rankTable(rows: Ranked[], list: string, empty: string) {
    const f = this.format;
    if (rows.length === 0) return html`<p class="empty">${empty}</p>`;
    return html`<div class="table-wrap"><table class="ranked" data-list=${list}>
      <thead><tr><th scope="col">Tenant</th><th scope="col" class="num">Used</th><th scope="col" class="num">Quota</th>
        <th scope="col" class="num">Share</th><th scope="col">Level</th></tr></thead>
      <tbody>${rows.map(
        (r) => html`<tr data-tenant=${r.tenant_id}>
          <th scope="row"><a href=${consoleHref({ page: 'tenant', tenantId: r.tenant_id })}>${r.tenant_name}</a></th>
          <td class="num" data-metric="used">${f.count(r.used)}</td>
          <td class="num">${r.quota === null ? 'Unlimited' : f.count(r.quota)}</td>
          <td class="num">${r.percent === null ? '—' : f.percent(r.percent)}</td>
          <td>${levelBadge(r.level)}</td></tr>`,
      )}</tbody></table></div>`;
  }
}

if (!customElements.get('console-overview'))
  customElements.define('console-overview', ConsoleOverview);
