/**
 * What an alert says, rendered once for every channel: plain text for e-mail, text plus
 * Block Kit for Slack. Pure; the channels only transport the result.
 */

import { plural } from '../../domain/words.ts';

export interface AlertMessage {
  tenantId: string;
  tenantName: string;
  planName: string;
  /** hard_limit blocks runs at the quota, overage bills above it. */
  limitPolicy: string;
  /** Percent of the quota the alert is for, e.g. 80. */
  threshold: number;
  /** Billable executions when the threshold was reached (can be past it). */
  used: number;
  quota: number;
  periodStart: Date;
  periodEnd: Date;
}

export interface RenderedAlert {
  subject: string;
  text: string;
}

export interface SlackPayload {
  /** Shown in notifications and by clients without Block Kit. */
  text: string;
  blocks: unknown[];
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** Unambiguous for every reader: `2026-12-01 00:00 UTC`. */
export const formatUtc = (date: Date) => `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;

/** Whole percent, rounded down so 99.9 % never reads as 100 %. */
const percentOf = (used: number, quota: number) =>
  quota > 0 ? Math.floor((used * 100) / quota) : null;

function headline(m: AlertMessage): string {
  return m.threshold === 100
    ? `${m.tenantName} has used all the executions included in its plan`
    : `${m.tenantName} has used ${m.threshold} % of the executions included in its plan`;
}

function usage(m: AlertMessage): string {
  const pct = percentOf(m.used, m.quota);
  return `${integer.format(m.used)} of ${plural(m.quota, 'execution')}${pct === null ? '' : ` (${pct} %)`}`;
}

function consequence(m: AlertMessage): string {
  const quota = integer.format(m.quota);
  if (m.limitPolicy === 'overage') {
    return m.threshold >= 100
      ? `Executions above the included ${quota} are billed as overage.`
      : `Executions above the included ${quota} will be billed as overage.`;
  }
  return m.threshold >= 100
    ? 'New runs are blocked until the billing period ends or the plan changes.'
    : `New runs will be blocked at ${plural(m.quota, 'execution')}.`;
}

export function renderAlert(m: AlertMessage): RenderedAlert {
  return {
    // A name with a line break must not fold the header.
    subject: `${headline(m)} (${m.planName})`.replace(/\s+/g, ' '),
    text: [
      `${headline(m)}.`,
      '',
      `Plan: ${m.planName}`,
      `Used: ${usage(m)}`,
      `Billing period: ${formatUtc(m.periodStart)} to ${formatUtc(m.periodEnd)}`,
      '',
      consequence(m),
      '',
      `Tenant id: ${m.tenantId}`,
    ].join('\n'),
  };
}

/** Slack's mrkdwn treats these three as control characters; everything else is literal. */
export const escapeSlack = (text: string) =>
  text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

export function renderSlack(m: AlertMessage): SlackPayload {
  const title = escapeSlack(headline(m));
  return {
    text: `${title}: ${usage(m)}.`,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `*${title}*` } },
      {
        type: 'section',
        fields: [
          { type: 'mrkdwn', text: `*Plan*\n${escapeSlack(m.planName)}` },
          { type: 'mrkdwn', text: `*Used*\n${usage(m)}` },
          { type: 'mrkdwn', text: `*Period ends*\n${formatUtc(m.periodEnd)}` },
        ],
      },
      { type: 'section', text: { type: 'mrkdwn', text: consequence(m) } },
      { type: 'context', elements: [{ type: 'mrkdwn', text: `Tenant id: ${m.tenantId}` }] },
    ],
  };
}
