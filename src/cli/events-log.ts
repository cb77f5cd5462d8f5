/**
 * `--events FILE` / TOKENKEEPER_EVENTS: the manager's events, and the skip records and
 * notifications of a command, appended to a file as JSON lines, one object per line.
 *
 * Several processes (parallel cron jobs, keepalive) may append to one file: each line is a single
 * write() on a descriptor opened with O_APPEND, so lines from different processes never
 * interleave. Writes are synchronous so that nothing is lost when the process exits right after.
 * Events carry no secrets by construction; they are passed through redact() anyway.
 */
import { closeSync, writeSync } from "node:fs";
import { redact } from "../core/secret.js";
import { toWire } from "../core/wire-json.js";
import type { TokenkeeperEvent } from "../manager/events.js";
import type { TokenManager } from "../manager/token-manager.js";
import { type SkipRecord, skipRecordJson } from "../surfaces/skip-record.js";
import { openPrivateAppend } from "./private-append.js";

export class EventsLog {
  #fd: number | undefined;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /**
   * Opens for appending: created 0600, an existing file's loose mode tightened, a symlink or a
   * non-regular file refused (private-append.ts). A bad path is a configuration error (exit 78).
   */
  static open(path: string): EventsLog {
    return new EventsLog(openPrivateAppend(path, "the events file"));
  }

  /** A manager event, in the wire dialect (snake_case, ISO-8601 times: core/wire-json.ts). */
  event(event: TokenkeeperEvent): void {
    this.#line(JSON.stringify(toWire(redact(event))));
  }

  /** A skip record, as `{"type":"skip_record", …record}`. Not through redact(): see skipRecordJson. */
  record(record: SkipRecord, phase?: string): void {
    this.#line(skipRecordJson(record, { type: "skip_record", ...(phase ? { phase } : {}) }));
  }

  /** Anything else a command wants on the record (notification outcomes, warnings). */
  note(type: string, at: number, fields: Record<string, unknown>): void {
    this.#line(JSON.stringify(toWire({ type, at, ...(redact(fields) as object) })));
  }

  close(): void {
    if (this.#fd === undefined) return;
    closeSync(this.#fd);
    this.#fd = undefined;
  }

  #line(text: string): void {
    if (this.#fd === undefined) return;
    try {
      writeSync(this.#fd, `${text}\n`);
    } catch {
      // A full disk must not take token refresh down with it; the log is an observer.
    }
  }
}

/** The file named by `--events` or TOKENKEEPER_EVENTS, opened; undefined when neither is set. */
export function openEventsLog(path: string | undefined, env: NodeJS.ProcessEnv): EventsLog | undefined {
  const target = path ?? env.TOKENKEEPER_EVENTS;
  return target ? EventsLog.open(target) : undefined;
}

/** Writes every event of `manager` to `log`. Returns the unsubscribe. */
export function logManagerEvents(manager: TokenManager, log: EventsLog | undefined): () => void {
  if (!log) return () => {};
  return manager.subscribe((event) => log.event(event));
}
