#!/usr/bin/env node
/**
 * A "browser" for unattended authorization-server test doubles whose /authorize answers with a
 * redirect at once (no login page): it follows the redirects, which ends at Tokenkeeper's
 * loopback callback, exactly as a browser would after the person clicked "Allow".
 */
const url = process.argv[2];
if (!url) {
  console.error("usage: browser.mjs URL");
  process.exit(64);
}
try {
  const response = await fetch(url, { redirect: "follow", signal: AbortSignal.timeout(30_000) });
  await response.arrayBuffer();
} catch (error) {
  console.error(`browser: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
