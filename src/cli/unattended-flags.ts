/** The flags every unattended command takes (store, events, notifications, timeout), and their help. */
import type { FlagOptions } from "./args.js";

export const UNATTENDED_OPTIONS = {
  store: { type: "string" },
  events: { type: "string" },
  "notify-command": { type: "string" },
  "notify-webhook": { type: "string" },
  timeout: { type: "string" },
} as const satisfies FlagOptions;

export const UNATTENDED_HELP = [
  "  --store URL             the store (default TOKENKEEPER_STORE, else the state directory)",
  "  --events FILE           append events and skip records as JSON lines (or TOKENKEEPER_EVENTS)",
  "  --notify-command CMD    run CMD (sh -c) with the record on stdin when a human is needed",
  "                          (or TOKENKEEPER_NOTIFY_COMMAND; a connector's own setting wins)",
  "  --notify-webhook URL    POST the record as JSON there (or TOKENKEEPER_NOTIFY_WEBHOOK)",
  "  --timeout DURATION      stop retrying a failing token endpoint after this (default 30s)",
].join("\n");

export type UnattendedFlags = { [K in keyof typeof UNATTENDED_OPTIONS]?: string | undefined };
