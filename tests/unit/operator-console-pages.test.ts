import { describe, expect, it } from 'vitest';
import { codeSpans, findingTenants, whatToDo } from '../../web/src/console/findings.ts';
import { latestReplyOnly } from '../../web/src/console/latest-reply.ts';
import { columnLabel, ledgerCell, ledgerColumns } from '../../web/src/console/ledger-columns.ts';
import { consoleHref, isConsoleHash, parseConsoleRoute } from '../../web/src/console/route.ts';
import { operatorErrorMessage } from '../../web/src/errors.ts';
import { formatter } from '../../web/src/format.ts';

describe('console routes', () => {
  it('reads each page from its hash and writes the same hash back', () => {
    const id = '2f6c0a52-9f0e-4a57-9d8e-0b5f3b9c1a10';
    for (const route of [
      { page: 'overview' },
      { page: 'tenants' },
      { page: 'tenant', tenantId: id },
      { page: 'health' },
    ] as const) {
      expect(parseConsoleRoute(consoleHref(route))).toEqual(route);
    }
    expect(consoleHref({ page: 'tenant', tenantId: id })).toBe(`#/console/tenants/${id}`);
  });

  it('knows the console from the tenant pages, and sends unknown console paths to the overview', () => {
    expect(isConsoleHash('#/console')).toBe(true);
    expect(isConsoleHash('#/console/health')).toBe(true);
    expect(isConsoleHash('')).toBe(false);
    expect(isConsoleHash('#/consoles')).toBe(false);
    expect(parseConsoleRoute('#/console/nowhere')).toEqual({ page: 'overview' });
  });

  it('reads a tenant address whose % escape is not UTF-8, or that is no UUID, as no tenant, and writes it back as it was', () => {
    // Not a UUID: the database would answer "invalid input syntax for type uuid".
    for (const segment of ['%E0%A4%A', '%', '%ZZ', '%C3', 'abc', 'demo-acme', '2f6c0a52-9f0e']) {
      const hash = `#/console/tenants/${segment}`;
      expect(parseConsoleRoute(hash)).toEqual({ page: 'no-such-tenant', segment });
      expect(consoleHref(parseConsoleRoute(hash))).toBe(hash);
    }
  });
});

describe('health findings', () => {
  it('splits what is wrong from what to do at the first colon outside parentheses', () => {
    expect(
      whatToDo('Stripe refuses the API key (Invalid API Key: sk_***): set STRIPE_SECRET_KEY'),
    ).toEqual({
      problem: 'Stripe refuses the API key (Invalid API Key: sk_***)',
      todo: 'set STRIPE_SECRET_KEY',
    });
  });

  it('gives the console’s advice to findings that carry none', () => {
    expect(whatToDo('2 sources failing').todo).toMatch(/last error/);
    expect(whatToDo('collect-usage failed 3 times since its last success (n8n: 502)')).toEqual({
      problem: 'collect-usage failed 3 times since its last success (n8n: 502)',
      todo: expect.stringMatching(/Scheduled functions/),
    });
    expect(whatToDo('something new').todo).toBeUndefined();
  });
});

describe('the tenants a finding is about', () => {
  const source = (tenant: string, enabled: boolean, failures: number) => ({
    tenant_id: `id-${tenant}`,
    tenant_name: tenant,
    enabled,
    consecutive_failures: failures,
  });

  it('names each tenant with a failing enabled source once, and none for other findings', () => {
    const sources = [
      source('Acme', true, 3),
      source('Acme', true, 1),
      source('Globex', true, 0),
      source('Initech', false, 5),
      source('Umbrella', true, 2),
    ];
    expect(findingTenants('3 sources failing', sources)).toEqual([
      { tenantId: 'id-Acme', tenantName: 'Acme' },
      { tenantId: 'id-Umbrella', tenantName: 'Umbrella' },
    ]);
    expect(findingTenants('2 alert deliveries given up', sources)).toEqual([]);
  });
});

describe('ledger columns', () => {
  it('shows every field any row has, a new kind of entry included, the identifier last', () => {
    const columns = ledgerColumns([
      { id: 2, identifier: 'flowmeter:x:85', value: 85, status: 'sent' },
      { id: 3, identifier: 'flowmeter:x:adj', value: -5, status: 'pending', kind: 'credit' },
    ]);
    expect(columns).toEqual(['id', 'status', 'value', 'kind', 'identifier']);
    expect(columnLabel('reported_through')).toBe('Reported through');
  });

  it('formats cells by what they hold', () => {
    const f = formatter('en-US');
    expect(ledgerCell(1234, f)).toBe('1,234');
    expect(ledgerCell(null, f)).toBe('—');
    expect(ledgerCell('2026-12-01T00:00:00+00:00', f)).toMatch(/Dec 1, 2026/);
    expect(ledgerCell('sent', f)).toBe('sent');
  });
});

describe('operator errors', () => {
  it('says a refusal is for operators only, never an empty page or an ended session', () => {
    expect(operatorErrorMessage({ code: '42501', message: 'only operators may do this' })).toEqual({
      message: expect.stringMatching(/not an operator/),
      notOperator: true,
      expired: false,
    });
    expect(operatorErrorMessage({ code: 'PT409', message: 'only a failed delivery' })).toEqual({
      message: 'Not done: only a failed delivery.',
      notOperator: false,
      expired: false,
    });
    expect(operatorErrorMessage({ code: 'PGRST303', message: 'JWT expired' })).toMatchObject({
      expired: true,
    });
  });
});

describe('codeSpans', () => {
  it('marks the parts of the advice between backticks as code', () => {
    expect(codeSpans('fix the key (`flowmeter sources set-key`) or disable it')).toEqual([
      { code: false, text: 'fix the key (' },
      { code: true, text: 'flowmeter sources set-key' },
      { code: false, text: ') or disable it' },
    ]);
    expect(codeSpans('no command here')).toEqual([{ code: false, text: 'no command here' }]);
  });
});

describe('latestReplyOnly', () => {
  it('drops a reply that arrives after a later call was made, whichever settles first', async () => {
    let stale = 0;
    const latest = latestReplyOnly(() => stale++);
    const replies: Array<(value: string) => void> = [];
    const call = () => new Promise<string>((resolve) => replies.push(resolve));
    const first = latest(call);
    const second = latest(call);
    replies[1]?.('tenant B');
    replies[0]?.('tenant A');
    expect(await second).toBe('tenant B');
    expect(await first).toBeUndefined();
    const third = latest(call);
    const fourth = latest(call);
    replies[2]?.('older reload');
    replies[3]?.('newer reload');
    expect(await third).toBeUndefined();
    expect(await fourth).toBe('newer reload');
    expect(await latest(async () => 'alone')).toBe('alone');
    expect(stale).toBe(2);
  });
});
