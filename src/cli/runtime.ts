/** The store a command works on: the one named by --store, else TOKENKEEPER_STORE, else the file store in the state directory. */
import { openStore } from "../store/open-store.js";
import type { Store } from "../store/types.js";
import type { CliContext } from "./context.js";

export async function openCliStore(storeUrl: string | undefined, ctx: CliContext): Promise<Store> {
  return openStore(storeUrl ?? ctx.env.TOKENKEEPER_STORE, { env: ctx.env, clock: ctx.clock });
}
