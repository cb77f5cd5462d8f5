/**
 * Shared plumbing for commands: opening the store named by --store / TOKENKEEPER_STORE,
 * and building a token manager whose events are written as JSON lines.
 */
import { openStore } from "../store/open-store.js";
import type { Store } from "../store/types.js";
import type { CliContext } from "./context.js";

export async function openCliStore(storeUrl: string | undefined, ctx: CliContext): Promise<Store> {
  return openStore(storeUrl ?? ctx.env.TOKENKEEPER_STORE, { env: ctx.env, clock: ctx.clock });
}
