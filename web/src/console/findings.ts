const SOURCES_FAILING = /sources? failing$/;

const ADVICE: Array<[RegExp, string]> = [
  [
    SOURCES_FAILING,
    'Open the tenant, read the source’s last error, then fix the n8n URL or API key (`flowmeter sources set-key`) or disable the source.',
  ],
  [/given up$/, 'Open the tenant and send the delivery again once the channel works.'],
  [
    /since its last success/,
    'Read the error under Scheduled functions; the next scheduled run tries again.',
  ],
];

/** The first ": " outside parentheses: quoted errors in parentheses have colons of their own. */
function adviceStart(finding: string): number {
  let depth = 0;
  for (let i = 0; i < finding.length - 1; i++) {
    const c = finding[i];
    if (c === '(') depth++;
    else if (c === ')') depth = Math.max(0, depth - 1);
    else if (depth === 0 && c === ':' && finding[i + 1] === ' ') return i;
  }
  return -1;
}

/**
 * A finding as `flowmeter status` words it ("what: what to do"), split for the health page;
 * the findings that carry no advice of their own get the console's. Pure, so it is unit-tested.
 */
export function whatToDo(finding: string): { problem: string; todo: string | undefined } {
  const at = adviceStart(finding);
  if (at >= 0) return { problem: finding.slice(0, at), todo: finding.slice(at + 2) };
  return { problem: finding, todo: ADVICE.find(([pattern]) => pattern.test(finding))?.[1] };
}

interface SourceState {
  tenant_id: string;
  tenant_name: string;
  enabled: boolean;
  consecutive_failures: number;
}

/**
 * The tenants a finding is about, once each, so the page can link to them: for failing
 * sources, the tenants of the failing ones among the sources the status lists.
 */
export function findingTenants(
  finding: string,
  sources: SourceState[],
): Array<{ tenantId: string; tenantName: string }> {
  if (!SOURCES_FAILING.test(finding)) return [];
  const tenants = new Map<string, string>();
  for (const s of sources) {
    if (s.enabled && s.consecutive_failures > 0) tenants.set(s.tenant_id, s.tenant_name);
  }
  return [...tenants].map(([tenantId, tenantName]) => ({ tenantId, tenantName }));
}

/**
 * The advice is written for a terminal, with commands and variables between backticks; on
 * the page those parts are code. Odd-numbered parts are the ones between backticks.
 */
export function codeSpans(text: string): Array<{ code: boolean; text: string }> {
  return text
    .split('`')
    .map((part, i) => ({ code: i % 2 === 1, text: part }))
    .filter((part) => part.text !== '');
}
