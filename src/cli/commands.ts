/** The command table. One file per command; each exports a Command. */
import { doctorCommand } from "./commands/doctor.js";
import { ensureCommand } from "./commands/ensure.js";
import { keepaliveCommand } from "./commands/keepalive.js";
import { loginCommand } from "./commands/login.js";
import { logoutCommand } from "./commands/logout.js";
import { proxyCommand } from "./commands/proxy.js";
import { runCommand } from "./commands/run.js";
import { statusCommand } from "./commands/status.js";
import { storeCommand } from "./commands/store.js";
import { tokenCommand } from "./commands/token.js";
import type { Command } from "./context.js";

export const commands: Command[] = [
  // (commands register here, one import each, sorted by name)
  doctorCommand,
  ensureCommand,
  keepaliveCommand,
  loginCommand,
  logoutCommand,
  proxyCommand,
  runCommand,
  statusCommand,
  storeCommand,
  tokenCommand,
];
