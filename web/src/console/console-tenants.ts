import { html } from 'lit';
import { KNOWN_SUBSCRIPTION_STATUSES } from '../../../src/billing/stripe-webhook.ts';
import {
  getOverview,
  listTenants,
  type OperatorDb,
  TENANT_SORTS,
  type TenantSort,
  type TenantsCursor,
  type TenantsPage,
  type TenantsQuery,
} from '../../../src/operator-client/index.ts';
import { type UsageLevel, usageLevel } from '../../../src/usage-client/index.ts';
import { formatter } from '../format.ts';
import { LightElement } from '../light-element.ts';
import { LEVEL_LABEL } from '../widget/usage-view.ts';
import { announceStaleReply, latestReplyOnly } from './latest-reply.ts';
import { type Loaded, levelBadge, load, renderLoaded } from './page-state.ts';
import { consoleHref } from './route.ts';

const PAGE_ROWS = 25;
// 'none': no Stripe subscription; the rest as the subscription sync knows them.
const STATUSES = ['none', ...KNOWN_SUBSCRIPTION_STATUSES];

const COLUMN_LABEL: Record<TenantSort, string> = {
  name: 'Tenant',
  external_ref: 'Reference',
  plan: 'Plan',
  subscription_status: 'Status',
  used: 'Used',
  quota: 'Quota',
  percent: 'Share',
  level: 'Level',
  executions: 'Executions',
  reserved: 'Reserved',
  estimated_overage_amount: 'Est. overage',
  created_at: 'Created',
};
const NUMERIC = new Set<TenantSort>([
  'used',
  'quota',
  'percent',
  'executions',
  'reserved',
  'estimated_overage_amount',
]);

/**
 * Every tenant, one server page at a time (keyset: `next` of a page is where the following
 * one starts; previous pages are the cursors walked so far). Search, filters and the sort
 * start again from the first page; a late reply to an earlier query is dropped.
 */
export class ConsoleTenants extends LightElement {
  static override properties = {
    client: { attribute: false },
    page: { state: true },
    plans: { state: true },
    query: { state: true },
  };

  declare client: OperatorDb;
  declare page: Loaded<TenantsPage>;
  declare plans: Array<{ id: string; name: string }>;
  declare query: Required<Pick<TenantsQuery, 'sort' | 'descending'>> & {
    search: string;
    planId: string;
    level: string;
    status: string;
  };
  /** The cursor each page walked so far started at; the last one is the page shown. */
  #starts: Array<TenantsCursor | undefined> = [undefined];
  #format = formatter();
  #searchTimer: ReturnType<typeof setTimeout> | undefined;
  #latest = latestReplyOnly(announceStaleReply(this));

  constructor() {
    super();
    this.page = { kind: 'loading' };
    this.plans = [];
    this.query = { sort: 'name', descending: false, search: '', planId: '', level: '', status: '' };
  }

  override connectedCallback(): void {
    super.connectedCallback();
    void this.#load();
    void getOverview(this.client, { topRows: 1, maxNearLimit: 1 }).then(({ data }) => {
      if (data)
        this.plans = data.tenants_by_plan.map((p) => ({ id: p.plan_id, name: p.plan_name }));
    });
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    clearTimeout(this.#searchTimer);
  }

  async #load(): Promise<void> {
    const q = this.query;
    const after = this.#starts.at(-1);
    const page = await this.#latest(() =>
      load(this, () =>
        listTenants(this.client, {
          search: q.search.trim() || undefined,
          planIds: q.planId ? [q.planId] : undefined,
          levels: q.level ? [q.level as UsageLevel] : undefined,
          statuses: q.status ? [q.status] : undefined,
          sort: q.sort,
          descending: q.descending,
          maxRows: PAGE_ROWS,
          after,
        }),
      ),
    );
    if (page) this.page = page;
  }

  #change(patch: Partial<ConsoleTenants['query']>): void {
    this.query = { ...this.query, ...patch };
    this.#starts = [undefined];
    void this.#load();
  }

  #sortBy(column: TenantSort): void {
    const descending = this.query.sort === column ? !this.query.descending : NUMERIC.has(column);
    this.#change({ sort: column, descending });
  }

  #next(cursor: TenantsCursor): void {
    this.#starts = [...this.#starts, cursor];
    void this.#load();
  }

  #previous(): void {
    this.#starts = this.#starts.slice(0, -1);
    void this.#load();
  }

  protected override render() {
    const q = this.query;
    return html`<h1 class="page-title" tabindex="-1">Tenants</h1>
      <form class="card filters" role="search" aria-label="Search and filter tenants"
        @submit=${(e: Event) => e.preventDefault()}>
        <div class="field grow">
          <label for="tenant-search">Search name or reference</label>
          <input id="tenant-search" type="search" maxlength="200" .value=${q.search}
            @input=${(e: InputEvent) => {
              const search = (e.target as HTMLInputElement).value;
              clearTimeout(this.#searchTimer);
              this.#searchTimer = setTimeout(() => this.#change({ search }), 250);
            }} />
        </div>
        ${this.#select(
          'filter-plan',
          'Plan',
          q.planId,
          'All plans',
          this.plans.map((p) => [p.id, p.name]),
          (planId) => this.#change({ planId }),
        )}
        ${this.#select(
          'filter-level',
          'Level',
          q.level,
          'All levels',
          usageLevel.options.map((l) => [l, LEVEL_LABEL[l]]),
          (level) => this.#change({ level }),
        )}
        ${this.#select(
          'filter-status',
          'Status',
          q.status,
          'All statuses',
          STATUSES.map((s) => [s, s]),
          (status) => this.#change({ status }),
        )}
      </form>
      ${renderLoaded(this.page, (page) => this.#table(page))}`;
  }

  #select(
    id: string,
    label: string,
    value: string,
    all: string,
    options: Array<[string, string]>,
    onChange: (value: string) => void,
  ) {
    return html`<div class="field">
      <label for=${id}>${label}</label>
      <select id=${id} @change=${(e: Event) => onChange((e.target as HTMLSelectElement).value)}>
        <option value="" ?selected=${value === ''}>${all}</option>
        ${options.map(([v, text]) => html`<option value=${v} ?selected=${v === value}>${text}</option>`)}
      </select></div>`;
  }

  #header(column: TenantSort) {
    const q = this.query;
    const sorted = q.sort === column;
    const direction = q.descending ? 'descending' : 'ascending';
    return html`<th scope="col" class=${NUMERIC.has(column) ? 'num' : ''}
      aria-sort=${sorted ? direction : 'none'} data-column=${column}>
      <button type="button" class="sort" @click=${() => this.#sortBy(column)}>
        ${COLUMN_LABEL[column]}<span class="arrow" aria-hidden="true">${sorted ? (q.descending ? '▼' : '▲') : '↕'}</span>
      </button></th>`;
  }

  #table(page: TenantsPage) {
    const f = this.#format;
    const first = (this.#starts.length - 1) * PAGE_ROWS;
    return html`<section class="card" aria-labelledby="tenants-caption">
      <div class="table-wrap"><table class="tenants">
        <caption id="tenants-caption">
          ${page.total === 0 ? 'No tenant matches.' : `Tenants ${f.count(first + 1)}–${f.count(first + page.rows.length)} of ${f.count(page.total)}`}
          <span class="visually-hidden">, sorted by ${COLUMN_LABEL[this.query.sort]} ${this.query.descending ? 'descending' : 'ascending'}</span>
        </caption>
        <thead><tr>${TENANT_SORTS.map((c) => this.#header(c))}</tr></thead>
        <tbody>${page.rows.map(
          (r) => html`<tr data-tenant=${r.tenant_id}>
            <th scope="row" class="wraps"><a href=${consoleHref({ page: 'tenant', tenantId: r.tenant_id })}>${r.tenant_name}</a></th>
            <td class="wraps" data-metric="external-ref"><code>${r.external_ref ?? '—'}</code></td>
            <td class="wraps" data-metric="plan">${r.plan_name}</td>
            <td data-metric="status"><span class="status status-${r.subscription_status}">${r.subscription_status}</span></td>
            <td class="num" data-metric="used">${f.count(r.used)}</td>
            <td class="num" data-metric="quota">${r.quota === null ? 'Unlimited' : f.count(r.quota)}</td>
            <td class="num" data-metric="percent">${r.percent === null ? '—' : f.percent(r.percent)}</td>
            <td data-metric="level">${levelBadge(r.level)}</td>
            <td class="num" data-metric="executions">${f.count(r.executions)}</td>
            <td class="num" data-metric="reserved">${f.count(r.reserved)}</td>
            <td class="num" data-metric="overage-amount">${f.money(r.estimated_overage_amount, r.currency)}</td>
            <td data-metric="created"><time datetime=${r.created_at} title=${f.dateTime(r.created_at)}>${f.date(r.created_at)}</time></td>
          </tr>`,
        )}</tbody></table></div>
      <nav class="pager" aria-label="Tenant pages">
        <button type="button" class="secondary" ?disabled=${this.#starts.length === 1} @click=${() => this.#previous()}>Previous</button>
        <span class="muted">Page ${this.#starts.length}</span>
        <button type="button" class="secondary" ?disabled=${!page.next}
          @click=${() => page.next && this.#next(page.next)}>Next</button>
      </nav>
    </section>`;
  }
}

if (!customElements.get('console-tenants'))
  customElements.define('console-tenants', ConsoleTenants);
