import { html, nothing } from 'lit';
import { getHealth, type Health } from '../../../src/operator-client/index.ts';
import { scheduledFunctionRows } from '../../../src/ops/scheduled-functions.ts';
import { AutoRefresh, refreshedNote } from '../auto-refresh.ts';
import { codeSpans, findingTenants, whatToDo } from './findings.ts';
import { ConsolePage } from './page-state.ts';
import { consoleHref } from './route.ts';

/**
 * The findings `flowmeter status` reports, from the same rules, each with what to do; then
 * the figures behind them. Reloads every 30 s while the tab is visible.
 */
export class ConsoleHealth extends ConsolePage<Health> {
  constructor() {
    super();
    new AutoRefresh(this, () => void this.refresh());
  }

  override connectedCallback(): void {
    super.connectedCallback();
    void this.refresh();
  }

  protected override read() {
    return getHealth(this.client);
  }

  protected override render() {
    const f = this.format;
    return html`<div class="title-row">
        <h1 class="page-title" tabindex="-1">Health</h1>
        ${refreshedNote(this.refreshedAt, f)}
        <button type="button" class="secondary" @click=${() => this.refresh()}>Refresh now</button>
      </div>
      ${this.renderAnswer((h) => this.#ready(h))}`;
  }

  #ready(h: Health) {
    const f = this.format;
    const s = h.status;
    return html`
      <section class="card" aria-labelledby="findings">
        <h2 id="findings">Needs attention (${h.needsAttention.length})</h2>
        ${
          h.needsAttention.length === 0
            ? html`<p class="all-good">Nothing needs a person right now.</p>`
            : html`<ul class="findings">${h.needsAttention.map((finding) => {
                const { problem, todo } = whatToDo(finding);
                const tenants = findingTenants(finding, s.sources.worst);
                return html`<li><strong>${problem}</strong>${todo ? html`<p><span class="todo-label">What to do:</span> ${codeSpans(todo).map((part) => (part.code ? html`<code>${part.text}</code>` : part.text))}</p>` : nothing}${
                  tenants.length > 0
                    ? html`<p class="finding-tenants">Tenants: ${tenants.map(
                        (t, i) =>
                          html`${i > 0 ? ', ' : ''}<a href=${consoleHref({ page: 'tenant', tenantId: t.tenantId })}>${t.tenantName}</a>`,
                      )}</p>`
                    : nothing
                }</li>`;
              })}</ul>`
        }
      </section>
      <div class="stat-grid">
        <section class="card stat" aria-labelledby="h-sources"><h2 id="h-sources">Sources</h2>
          <p class="big">${f.count(s.sources.failing)}<small> failing</small></p>
          <p class="muted">${f.count(s.sources.enabled)} enabled of ${f.count(s.sources.total)} · max lag ${s.sources.max_lag_seconds === null ? '—' : f.duration(s.sources.max_lag_seconds * 1000)}</p></section>
        <section class="card stat" aria-labelledby="h-reports"><h2 id="h-reports">Stripe reports</h2>
          <p class="big">${f.count(s.meter_reports.pending)}<small> pending</small></p>
          <p class="muted">${f.count(s.meter_reports.retrying)} retrying · ${f.count(s.meter_reports.failing)} failing · ${f.count(s.meter_reports.late)} late</p></section>
        <section class="card stat" aria-labelledby="h-alerts"><h2 id="h-alerts">Alert deliveries</h2>
          <p class="big">${f.count(s.alert_deliveries.pending + s.alert_deliveries.sending)}<small> waiting</small></p>
          <p class="muted">${f.count(s.alert_deliveries.retrying)} retrying · ${f.count(s.alert_deliveries.given_up)} given up</p></section>
        <section class="card stat" aria-labelledby="h-gaps"><h2 id="h-gaps">Collection gaps</h2>
          <p class="big">${f.count(h.collector.unacknowledged_gaps.gaps)}<small> not acknowledged</small></p>
          <p class="muted">${f.counted(h.collector.unacknowledged_gaps.executions, 'execution')} · ${f.counted(h.collector.killed_runs.length, 'killed run')} · ${f.counted(h.collector.dead_leases.length, 'dead lease')}</p></section>
      </div>
      <section class="card" aria-labelledby="worst">
        <h2 id="worst">Sources most in need of attention</h2>
        ${
          s.sources.worst.length === 0
            ? html`<p class="empty">No source is registered.</p>`
            : html`<div class="table-wrap"><table class="worst-sources">
              <thead><tr><th scope="col">Tenant</th><th scope="col">Source</th><th scope="col">State</th>
                <th scope="col" class="num">Failures</th><th scope="col" class="num">Lag</th><th scope="col">Last error</th></tr></thead>
              <tbody>${s.sources.worst.map(
                (
                  w,
                ) => html`<tr data-source=${w.id}><th scope="row"><a href=${consoleHref({ page: 'tenant', tenantId: w.tenant_id })}>${w.tenant_name}</a></th><td><code>${w.base_url}</code></td>
                  <td>${w.enabled ? html`<span class="badge ${w.consecutive_failures > 0 ? 'bad' : 'ok'}">${w.consecutive_failures > 0 ? 'Failing' : 'Enabled'}</span>` : html`<span class="badge off">Disabled</span>`}</td>
                  <td class="num">${f.count(w.consecutive_failures)}</td>
                  <td class="num">${w.lag_seconds === null ? 'never collected' : f.duration(w.lag_seconds * 1000)}</td>
                  <td>${w.last_error ? html`<span class="error-text">${w.last_error}</span>` : '—'}</td></tr>`,
              )}</tbody></table></div>`
        }
      </section>
      <section class="card" aria-labelledby="functions">
        <h2 id="functions">Scheduled functions</h2>
        <div class="table-wrap"><table class="scheduled-functions">
          <thead><tr><th scope="col">Function</th><th scope="col">Schedule</th><th scope="col">Last run</th><th scope="col">Outcome</th>
            <th scope="col" class="num">Failures since success</th><th scope="col">Last error</th></tr></thead>
          <tbody>${scheduledFunctionRows(s.scheduled_functions, s.generated_at).map(
            (fn) => html`<tr data-function=${fn.name}><th scope="row"><code>${fn.name}</code></th>
              <td>${fn.schedule ?? '—'}</td>
              <td>${fn.run ? html`${f.dateTime(fn.run.last_started_at)}${fn.overdue ? html` <span class="badge bad">Overdue</span>` : nothing}` : 'never run'}</td>
              <td>${fn.run ? html`<span class="badge ${fn.run.last_ok === false ? 'bad' : fn.run.last_ok ? 'ok' : 'off'}">${fn.run.last_ok === null ? 'running' : fn.run.last_ok ? 'ok' : 'failed'}</span>` : '—'}</td>
              <td class="num">${fn.run ? f.count(fn.run.failures_since_success) : '—'}</td><td>${fn.run?.last_error ?? '—'}</td></tr>`,
          )}</tbody></table></div>
      </section>`;
  }
}

if (!customElements.get('console-health')) customElements.define('console-health', ConsoleHealth);
