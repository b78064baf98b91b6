import { describe, expect, it } from 'vitest';
import {
  SCHEDULED_FUNCTIONS,
  scheduledFunctionRows,
  scheduleInWords,
} from '../../src/ops/scheduled-functions.ts';

const now = '2026-12-03T12:00:00Z';

describe('the scheduled functions a status shows', () => {
  it('lists every shipped function, run or not, then the others the database has runs of', () => {
    const rows = scheduledFunctionRows(
      [
        { function_name: 'report-usage', last_started_at: '2026-12-03T11:00:00Z' },
        { function_name: 'nightly-export', last_started_at: '2026-12-03T02:00:00Z' },
      ],
      now,
    );
    expect(rows.map((r) => r.name)).toEqual([
      ...Object.keys(SCHEDULED_FUNCTIONS),
      'nightly-export',
    ]);
    expect(rows.find((r) => r.name === 'deliver-alerts')).toEqual({
      name: 'deliver-alerts',
      run: undefined,
      schedule: 'every 5 minutes',
      overdue: false,
    });
    expect(rows.find((r) => r.name === 'nightly-export')).toMatchObject({
      schedule: null,
      overdue: false,
    });
  });

  it('calls a function overdue after two of its intervals and five minutes', () => {
    const at = (minutesAgo: number) => [
      {
        function_name: 'collect-usage',
        last_started_at: new Date(Date.parse(now) - minutesAgo * 60_000).toISOString(),
      },
    ];
    const overdue = (minutesAgo: number) =>
      scheduledFunctionRows(at(minutesAgo), now).find((r) => r.name === 'collect-usage')?.overdue;
    expect(overdue(25)).toBe(false);
    expect(overdue(26)).toBe(true);
  });

  it('says each shipped schedule in words', () => {
    expect(scheduleInWords('deliver-webhooks')).toBe('every minute');
    expect(scheduleInWords('collect-usage')).toBe('every 10 minutes');
    expect(scheduleInWords('report-usage')).toBe('hourly');
    expect(scheduleInWords('reconcile-usage')).toBe('daily');
  });
});
