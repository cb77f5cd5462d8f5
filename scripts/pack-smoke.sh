#!/usr/bin/env bash
# Packs the package as it would be published, installs the tarball into a fresh global prefix
# whose path has a space in it, and runs the installed `tokenkeeper` the ways users do: through
# npm's bin link, through a symlink with another name, and as a library import. Fails on the
# first thing that does not work. Dependencies come from npm's cache when they are there
# (CI has just run `npm ci`).
#
#   bash scripts/pack-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d "${TMPDIR:-/tmp}/tokenkeeper pack.XXXXXX")"
trap 'rm -rf "$work"' EXIT
prefix="$work/global prefix"
home="$work/home"
mkdir -p "$prefix" "$home"
fail() { echo "pack-smoke: FAIL: $*" >&2; exit 1; }

version="$(node -p 'require("./package.json").version')"
echo "pack-smoke: packing tokenkeeper@$version"
npm pack --silent --pack-destination "$work" >/dev/null
tarball="$work/tokenkeeper-$version.tgz"
[ -f "$tarball" ] || fail "npm pack made no $tarball"

# What the tarball holds: the built CLI and library, the documents; no sources, tests or bench.
listing="$(tar -tzf "$tarball")"
for f in package/dist/src/cli/bin.cjs package/dist/src/index.js package/dist/src/index.d.ts \
  package/README.md package/LICENSE package/CHANGELOG.md package/SECURITY.md package/package.json; do
  grep -qx "$f" <<<"$listing" || fail "the tarball lacks $f"
done
if grep -qE '^package/(src|test|bench|scripts|demo)/' <<<"$listing"; then fail "the tarball holds sources or tests"; fi

echo "pack-smoke: installing into \"$prefix\""
npm install --global --prefix "$prefix" --prefer-offline --no-audit --no-fund --loglevel=error "$tarball" >/dev/null

export HOME="$home" TOKENKEEPER_HOME="$home/state"
unset TOKENKEEPER_STORE
tk="$prefix/bin/tokenkeeper"
[ -x "$tk" ] || fail "no executable at $tk"

[ "$("$tk" --version)" = "$version" ] || fail "--version did not print $version"
"$tk" --help | grep -q "headers" || fail "--help does not list the commands"

# A symlink with another name (an entry check on the file name once made this a silent no-op).
ln -s "$tk" "$work/tk-other-name"
[ "$("$work/tk-other-name" --version)" = "$version" ] || fail "a symlink named otherwise printed nothing"

# Commands that touch the store: an empty one, and an unknown connector (configuration: 78).
"$tk" status | grep -q "no connectors" || fail "status on an empty store"
set +e
"$tk" token nobody >/dev/null 2>&1; code=$?
set -e
[ "$code" = 78 ] || fail "token for an unknown connector exited $code, not 78"

# A fresh token in the file store: the bundled fast path prints it, and prints what the full CLI
# prints (any option, here `--min-ttl 0`, which changes nothing, sends a call to the full CLI).
mkdir -p -m 700 "$TOKENKEEPER_HOME/connectors"
node -e '
  const now = Date.now();
  const record = {
    schema: 1, name: "smoke", grant: "client_credentials",
    server: { mcp_url: "https://mcp.invalid/mcp", resource: "https://mcp.invalid/mcp", issuer: "https://as.invalid",
      metadata: { issuer: "https://as.invalid", token_endpoint: "https://as.invalid/token" } },
    client: { kind: "preregistered", client_id: "smoke", token_endpoint_auth_method: "none" },
    tokens: { access_token: "smoke-token.not-a-secret", token_type: "Bearer", expires_at: now + 86400000, obtained_at: now },
    state: { health: "ok", refresh_count: 0, rotation_count: 0 },
    created_at: now, updated_at: now,
  };
  require("node:fs").writeFileSync(process.argv[1], JSON.stringify({ version: 1, record }), { mode: 0o600 });
' "$TOKENKEEPER_HOME/connectors/smoke.json"
[ "$("$tk" token smoke)" = "smoke-token.not-a-secret" ] || fail "token did not print the fresh token"
[ "$("$tk" token smoke)" = "$("$tk" token smoke --min-ttl 0)" ] || fail "fast path and full CLI disagree on token"
[ "$("$tk" headers smoke)" = "$("$tk" headers smoke --min-ttl 0)" ] || fail "fast path and full CLI disagree on headers"
[ "$("$tk" token smoke --json)" = "$("$tk" token smoke --json --min-ttl 0)" ] || fail "fast path and full CLI disagree on token --json"
rm "$TOKENKEEPER_HOME/connectors/smoke.json"

# The configuration a desktop client gets names node and the installed script by absolute path.
config="$("$tk" proxy some-server --print-config --client claude-desktop --json 2>/dev/null)"
node -e '
  const printed = JSON.parse(process.argv[1]);
  const fs = require("node:fs");
  if (printed.command !== process.execPath) throw new Error(`command is ${printed.command}`);
  if (!fs.existsSync(printed.args[0])) throw new Error(`script ${printed.args[0]} does not exist`);
' "$config" || fail "print-config does not name node and the installed script"

# The library, as a dependency imports it.
(cd "$prefix/lib" && node --input-type=module -e '
  const tk = await import("tokenkeeper");
  for (const name of ["TokenManager", "openStore", "createAuthFetch"]) if (!(name in tk)) throw new Error(name);
  await import("tokenkeeper/mcp");
') || fail "the library does not import"

echo "pack-smoke: ok (tokenkeeper@$version packed, installed and run)"
