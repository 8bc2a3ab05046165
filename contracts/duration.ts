/**
 * Durations as people write them in a sentence, for every message that says how long: rate-limit
 * refusals ("3 images per hour … try again in 42 minutes"), `/imagine-quota`, the chat adapters
 * and the web page.
 */

const plural = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'}`;

/**
 * "45 seconds", "42 minutes", "1 hour", "1 hour 30 minutes", "2 days", "1 day 3 hours".
 * Rounded up to the unit shown (a wait is never said to be shorter than it is), with at most two
 * units; a fraction of a second is a second, nothing (or nonsense) is "0 seconds".
 */
export function formatDuration(seconds: number): string {
  const s = Number.isFinite(seconds) ? Math.max(0, Math.ceil(seconds)) : 0;
  if (s < 60) return plural(s, 'second');
  const minutes = Math.ceil(s / 60);
  if (minutes < 60) return plural(minutes, 'minute');
  if (minutes < 24 * 60) {
    const h = Math.floor(minutes / 60);
    const m = minutes % 60;
    return m === 0 ? plural(h, 'hour') : `${plural(h, 'hour')} ${plural(m, 'minute')}`;
  }
  const hours = Math.ceil(s / 3600);
  const d = Math.floor(hours / 24);
  const h = hours % 24;
  return h === 0 ? plural(d, 'day') : `${plural(d, 'day')} ${plural(h, 'hour')}`;
}

/**
 * A rate-limit window as people say it: "per hour", "per 10 minutes", "per day", "per 36 hours",
 * in the largest unit that divides it ("per 90 seconds" when none does).
 */
export function formatPer(windowSeconds: number): string {
  const s = Number.isFinite(windowSeconds) ? Math.max(1, Math.round(windowSeconds)) : 1;
  const units: Array<[number, string]> = [
    [86_400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
    [1, 'second'],
  ];
  for (const [size, name] of units)
    if (s % size === 0) {
      const n = s / size;
      return n === 1 ? `per ${name}` : `per ${n} ${name}s`;
    }
  return `per ${s} seconds`;
}
