import { describe, expect, it } from 'vitest';
import {
  type AlertMessage,
  escapeSlack,
  formatUtc,
  renderAlert,
  renderSlack,
} from '../../src/alerts/channels/message.ts';

const base: AlertMessage = {
  tenantId: '7c9e6679-7425-40de-944b-e07fc1f90ae7',
  tenantName: 'Acme',
  planName: 'Pro',
  limitPolicy: 'hard_limit',
  threshold: 80,
  used: 8123,
  quota: 10_000,
  periodStart: new Date('2026-11-01T00:00:00Z'),
  periodEnd: new Date('2026-12-01T00:00:00Z'),
};

const slackText = (m: AlertMessage) => JSON.stringify(renderSlack(m).blocks);

describe('renderAlert', () => {
  it('says who, which plan, how much of the quota and when the period ends', () => {
    const { subject, text } = renderAlert(base);
    expect(subject).toBe('Acme has used 80 % of the executions included in its plan (Pro)');
    expect(text).toBe(
      [
        'Acme has used 80 % of the executions included in its plan.',
        '',
        'Plan: Pro',
        'Used: 8,123 of 10,000 executions (81 %)',
        'Billing period: 2026-11-01 00:00 UTC to 2026-12-01 00:00 UTC',
        '',
        'New runs will be blocked at 10,000 executions.',
        '',
        'Tenant id: 7c9e6679-7425-40de-944b-e07fc1f90ae7',
      ].join('\n'),
    );
  });

  it('says "1 of 1 execution" of a quota of one', () => {
    const { text } = renderAlert({ ...base, quota: 1, used: 1, threshold: 80 });
    expect(text).toContain('Used: 1 of 1 execution (100 %)');
    expect(text).toContain('New runs will be blocked at 1 execution.');
  });

  it('at 100 % on a hard limit says runs are blocked', () => {
    const { subject, text } = renderAlert({ ...base, threshold: 100, used: 10_000 });
    expect(subject).toBe('Acme has used all the executions included in its plan (Pro)');
    expect(text).toContain('Used: 10,000 of 10,000 executions (100 %)');
    expect(text).toContain(
      'New runs are blocked until the billing period ends or the plan changes.',
    );
  });

  it('on an overage plan says what is billed instead of blocked', () => {
    expect(renderAlert({ ...base, limitPolicy: 'overage' }).text).toContain(
      'Executions above the included 10,000 will be billed as overage.',
    );
    const over = renderAlert({ ...base, limitPolicy: 'overage', threshold: 150, used: 15_500 });
    expect(over.subject).toBe('Acme has used 150 % of the executions included in its plan (Pro)');
    expect(over.text).toContain('Used: 15,500 of 10,000 executions (155 %)');
    expect(over.text).toContain('Executions above the included 10,000 are billed as overage.');
  });

  it('rounds the percentage down, so just under the quota never reads as 100 %', () => {
    expect(renderAlert({ ...base, threshold: 95, used: 9999 }).text).toContain('(99 %)');
  });

  it('shows no percentage for a zero quota', () => {
    expect(renderAlert({ ...base, threshold: 100, used: 3, quota: 0 }).text).toContain(
      'Used: 3 of 0 executions\n',
    );
  });

  it('is the same for the same alert, so a retried e-mail carries an identical payload', () => {
    expect(renderAlert({ ...base })).toEqual(renderAlert({ ...base }));
  });
});

describe('renderSlack', () => {
  it('has a notification text and Block Kit sections with plan, usage and period end', () => {
    const payload = renderSlack(base);
    expect(payload.text).toBe(
      'Acme has used 80 % of the executions included in its plan: 8,123 of 10,000 executions (81 %).',
    );
    expect(payload.blocks).toEqual([
      {
        type: 'section',
        text: {
          type: 'mrkdwn',
          text: '*Acme has used 80 % of the executions included in its plan*',
        },
      },
      {
        type: 'section',
        fields: [
          { type: 'mrkdwn', text: '*Plan*\nPro' },
          { type: 'mrkdwn', text: '*Used*\n8,123 of 10,000 executions (81 %)' },
          { type: 'mrkdwn', text: '*Period ends*\n2026-12-01 00:00 UTC' },
        ],
      },
      {
        type: 'section',
        text: { type: 'mrkdwn', text: 'New runs will be blocked at 10,000 executions.' },
      },
      {
        type: 'context',
        elements: [{ type: 'mrkdwn', text: 'Tenant id: 7c9e6679-7425-40de-944b-e07fc1f90ae7' }],
      },
    ]);
  });

  it('escapes tenant and plan names, so a name cannot mention @channel or forge a link', () => {
    const payload = renderSlack({
      ...base,
      tenantName: '<!channel> & <https://evil.test|click>',
      planName: 'A<B>',
    });
    expect(payload.text).toContain('&lt;!channel&gt; &amp; &lt;https://evil.test|click&gt;');
    expect(slackText({ ...base, planName: 'A<B>' })).toContain('*Plan*\\nA&lt;B&gt;');
    expect(JSON.stringify(payload)).not.toMatch(/<!channel>|<https:/);
  });
});

describe('helpers', () => {
  it('escapeSlack replaces exactly the three control characters', () => {
    expect(escapeSlack('a & b < c > d * _ ~')).toBe('a &amp; b &lt; c &gt; d * _ ~');
  });

  it('formatUtc prints minutes in UTC whatever the local zone', () => {
    expect(formatUtc(new Date('2026-02-28T23:59:59.999+05:00'))).toBe('2026-02-28 18:59 UTC');
  });
});
