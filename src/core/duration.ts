/** Durations as people write them on command lines: "90s", "5m", "1h30m", "2d", "250ms", or plain seconds. */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(text: string): number {
  const t = text.trim().toLowerCase();
  if (/^\d+(\.\d+)?$/.test(t)) return Math.round(Number(t) * 1000);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
  let total = 0;
  let consumed = 0;
  for (const match of t.matchAll(re)) {
    if (match.index !== consumed) break;
    total += Number(match[1]) * UNIT_MS[match[2]!]!;
    consumed += match[0].length;
  }
  if (consumed === 0 || consumed !== t.length)
    throw new RangeError(`not a duration: "${text}" (examples: 30s, 5m, 1h30m, 2d)`);
  return Math.round(total);
}

export function formatDuration(ms: number): string {
  const sign = ms < 0 ? "-" : "";
  let rest = Math.abs(Math.round(ms));
  if (rest < 1000) return `${sign}${rest}ms`;
  rest = Math.floor(rest / 1000);
  const d = Math.floor(rest / 86_400);
  const h = Math.floor((rest % 86_400) / 3600);
  const m = Math.floor((rest % 3600) / 60);
  const s = rest % 60;
  const parts = [d && `${d}d`, h && `${h}h`, m && `${m}m`, s && `${s}s`].filter(Boolean).slice(0, 2);
  return sign + (parts.join("") || "0s");
}

/** The largest epoch-ms a Date can hold (ECMA-262 §21.4.1.1): beyond it toISOString() throws. */
const MAX_DATE_MS = 8.64e15;

/**
 * An epoch-ms time as ISO 8601, or null when there is none or it is not a representable date.
 * For display of stored values, which a broken server or an old record may have made absurd:
 * showing them must never throw.
 */
export function isoTime(ms: number | null | undefined): string | null {
  return typeof ms === "number" && Number.isFinite(ms) && Math.abs(ms) <= MAX_DATE_MS
    ? new Date(ms).toISOString()
    : null;
}
