/**
 * Checks for data we read back from our own stores (connector records, store envelopes, lock
 * files), without a schema library. Why not zod here: loading zod costs about 70 ms of startup,
 * more than Node itself, and `tokenkeeper token` / `headers` run once per job, per Claude Code
 * reconnection, per cron tick. Responses from servers, which are large and varied, still go
 * through zod (oauth/metadata-schemas.ts), off the fresh-token path.
 *
 * Semantics follow what the zod schemas they replace did: unknown keys are dropped (except in a
 * `loose` object), numbers must be finite, the first failing field is reported by its dotted
 * path. A failure never quotes the value (it may be a token).
 */

export class ShapeError extends Error {
  override name = "ShapeError";
  constructor(
    /** Dotted path of the failing field, "(root)" for the value itself. */
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

export type Check<T> = (value: unknown, path: string) => T;
/** A check for an object key that may be absent. */
export interface OptionalCheck<T> extends Check<T | undefined> {
  readonly optional: true;
}
export type Infer<C> = C extends Check<infer T> ? T : never;

type Shape = Record<string, Check<unknown>>;
type OptionalKeys<S extends Shape> = {
  [K in keyof S]: S[K] extends OptionalCheck<unknown> ? K : never;
}[keyof S];
type Flat<T> = { [K in keyof T]: T[K] } & {};
export type ObjectOf<S extends Shape> = Flat<
  { [K in Exclude<keyof S, OptionalKeys<S>>]: Infer<S[K]> } & {
    [K in OptionalKeys<S>]?: Exclude<Infer<S[K]>, undefined>;
  }
>;

function fail(path: string, message: string): never {
  throw new ShapeError(path || "(root)", message);
}

const at = (path: string, key: string) => (path ? `${path}.${key}` : key);

export function string({
  nonEmpty = false,
  pattern,
}: {
  nonEmpty?: boolean;
  pattern?: RegExp;
} = {}): Check<string> {
  return (v, path) => {
    if (typeof v !== "string") return fail(path, "must be a string");
    if (nonEmpty && v.length === 0) return fail(path, "must not be empty");
    if (pattern && !pattern.test(v)) return fail(path, "has an invalid format");
    return v;
  };
}

export function number({
  int = false,
  min,
  above,
}: {
  int?: boolean;
  min?: number;
  above?: number;
} = {}): Check<number> {
  return (v, path) => {
    if (typeof v !== "number" || !Number.isFinite(v)) return fail(path, "must be a finite number");
    if (int && !Number.isInteger(v)) return fail(path, "must be an integer");
    if (min !== undefined && v < min) return fail(path, `must be at least ${min}`);
    if (above !== undefined && v <= above) return fail(path, `must be greater than ${above}`);
    return v;
  };
}

export function literal<const T extends string | number>(expected: T): Check<T> {
  return (v, path) => (v === expected ? (v as T) : fail(path, `must be ${JSON.stringify(expected)}`));
}

export function oneOf<const T extends readonly string[]>(values: T): Check<T[number]> {
  return (v, path) =>
    typeof v === "string" && values.includes(v) ? v : fail(path, `must be one of ${values.join(", ")}`);
}

export function nullable<T>(check: Check<T>): Check<T | null> {
  return (v, path) => (v === null ? null : check(v, path));
}

export function optional<T>(check: Check<T>): OptionalCheck<T> {
  const c = (v: unknown, path: string) => (v === undefined ? undefined : check(v, path));
  return Object.assign(c, { optional: true as const });
}

/** An absent value becomes `fallback()` (a fresh copy each time): the key is always there after. */
export function withDefault<T>(check: Check<T>, fallback: () => NoInfer<T>): Check<T> {
  return (v, path) => (v === undefined ? fallback() : check(v, path));
}

export function arrayOf<T>(check: Check<T>): Check<T[]> {
  return (v, path) =>
    Array.isArray(v) ? v.map((item, i) => check(item, at(path, String(i)))) : fail(path, "must be an array");
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function recordOf<T>(check: Check<T>): Check<Record<string, T>> {
  return (v, path) => {
    if (!isPlainObject(v)) return fail(path, "must be an object");
    const out: Record<string, T> = {};
    for (const [k, item] of Object.entries(v)) out[k] = check(item, at(path, k));
    return out;
  };
}

/**
 * An object with these keys. Other keys are dropped, or kept as they are with `loose` (for
 * server metadata we cache whole). An absent optional key stays absent.
 */
export function object<S extends Shape>(shape: S, { loose = false } = {}): Check<ObjectOf<S>> {
  const entries = Object.entries(shape);
  return (v, path) => {
    if (!isPlainObject(v)) return fail(path, "must be an object");
    const out: Record<string, unknown> = loose ? { ...v } : {};
    for (const [key, check] of entries) {
      const value = check(v[key], at(path, key));
      if (value === undefined) delete out[key];
      else out[key] = value;
    }
    return out as ObjectOf<S>;
  };
}
