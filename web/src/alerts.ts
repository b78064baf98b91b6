import type { UsageAlert } from '../../src/usage-client/index.ts';

/** Unread first, then newest first. */
export const alertsUnreadFirst = (alerts: UsageAlert[]): UsageAlert[] =>
  [...alerts].sort((a, b) => Number(a.readAt !== null) - Number(b.readAt !== null) || b.id - a.id);
