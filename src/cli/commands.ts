/** The command table. One file per command; each exports a Command. */
import type { Command } from "./context.js";

export const commands: Command[] = [
  // (commands register here, one import each, sorted by name)
];
