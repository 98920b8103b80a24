/** Milliseconds in each unit accepted by {@link parseDuration}. */
const unitMs = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `<number><unit>`: `250ms`, `30s`, `1.5h`; whitespace between them is tolerated. */
const durationPattern = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;

/** A duration: milliseconds as a number, or a string with a unit (`'250ms'`, `'30s'`, `'15m'`, `'24h'`, `'7d'`). */
export type Duration = number | string;

/** What a valid duration looks like, for error messages. */
export const durationExpectation =
  "expected milliseconds (a number ≥ 0) or a string like '250ms', '30s', '15m', '24h', '7d'";

/** Converts a {@link Duration} to whole milliseconds, or `undefined` when it is not a valid duration. */
export function tryParseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') {
    return Number.isFinite(value) && value >= 0 ? Math.round(value) : undefined;
  }
  if (typeof value !== 'string') return undefined;
  const match = durationPattern.exec(value.trim());
  return match ? Math.round(Number(match[1]) * unitMs[match[2] as keyof typeof unitMs]) : undefined;
}

/** Converts a {@link Duration} to whole milliseconds; throws a `TypeError` naming the bad value. */
export function parseDuration(value: Duration): number {
  const ms = tryParseDuration(value);
  if (ms === undefined) throw new TypeError(`duration is invalid: ${JSON.stringify(value)} (${durationExpectation})`);
  return ms;
}

/** The shortest name of a whole number of milliseconds: `1000` → `'1s'`, `86400000` → `'1d'`, `1500` → `'1500ms'`. */
export function durationName(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms % unitMs[unit] === 0) return `${ms / unitMs[unit]}${unit}`;
  }
  return `${ms}ms`;
}
