/** Durations in milliseconds, as Date.now() counts them. */
export const HOUR = 3600_000;
export const DAY = 24 * HOUR;
