/**
 * `tokenkeeper config NAME [KEY [VALUE | --unset]]`: show or change a connector's own settings
 * (the table in manager/settings.ts). The token manager makes the change (updateSettings): a
 * compare-and-set merge onto the latest record, so it never rolls back a token rotation that
 * happens meanwhile.
 */
import { EXIT } from "../../core/errors.js";
import { assertConnectorName, type ConnectorSettings } from "../../core/record.js";
import { SETTINGS, settingSpec, settingsLines, settingsView } from "../../manager/settings.js";
import { TokenManager } from "../../manager/token-manager.js";
import { interactiveCommand, parseFlags, UsageError } from "../args.js";
import type { CliContext } from "../context.js";
import { writeLine, writeWireJson } from "../output.js";
import { openCliStore } from "../runtime.js";

const USAGE = `Usage: tokenkeeper config NAME                 show connector NAME's settings
       tokenkeeper config NAME KEY VALUE       set one
       tokenkeeper config NAME KEY --unset     back to the default

Settings:
${SETTINGS.map((s) => `  ${s.key.padEnd(24)}${s.help}`).join("\n")}
  ${"header.NAME".padEnd(24)}an extra header for the MCP server (the proxy sends it), e.g. header.X-Api-Key

Options:
  --store URL   connector store (default: TOKENKEEPER_STORE, else the state directory)
  --json        print the settings as JSON (webhook by origin, headers by name: either may hold a secret)

Every setting is documented in docs/configuration.md. Exit codes: 0 ok, 64 usage, 78 unknown
connector or invalid value.`;

export const configCommand = interactiveCommand({
  name: "config",
  summary: "show or change a connector's settings (refresh window, notifications, headers)",
  usage: USAGE,
  run,
});

async function run(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    unset: { type: "boolean" },
    store: { type: "string" },
    json: { type: "boolean" },
  });
  const [name, key, value, ...extra] = positionals;
  if (!name) throw new UsageError("missing connector NAME");
  if (extra.length > 0) throw new UsageError("give one KEY and one VALUE (quote a value with spaces)");
  assertConnectorName(name);
  if (key === undefined && values.unset) throw new UsageError("--unset needs a KEY");
  if (key !== undefined && value === undefined && !values.unset)
    throw new UsageError(`give a VALUE for ${key}, or --unset`);
  if (value !== undefined && values.unset) throw new UsageError("give a VALUE or --unset, not both");
  // Validated before the store is opened: a bad key or value changes nothing.
  const spec = key === undefined ? undefined : settingSpec(key);
  const change = spec
    ? value === undefined
      ? spec.unset
      : (s: Parameters<typeof spec.set>[0]) => spec.set(s, value)
    : undefined;
  if (spec && value !== undefined) spec.set({}, value);

  const store = await openCliStore(values.store, ctx);
  const manager = new TokenManager({ store, clock: ctx.clock });
  try {
    const settings: ConnectorSettings = change
      ? await manager.updateSettings(name, change)
      : (await manager.record(name)).settings;
    if (values.json) writeWireJson(ctx, { connector: name, settings: settingsView(settings) });
    else {
      if (spec) writeLine(ctx.stdout, `${value === undefined ? "Unset" : "Set"} ${spec.key} of "${name}".`);
      for (const line of settingsLines(settings)) writeLine(ctx.stdout, `  ${line}`);
    }
    return EXIT.ok;
  } finally {
    await manager.close();
    await store.close();
  }
}
