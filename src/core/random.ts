/**
 * Random hex for names (lock tokens, temporary files). Through the global Web Crypto API rather
 * than `node:crypto`: importing `node:crypto` costs a few milliseconds of startup even when
 * nothing random is needed, and `tokenkeeper token` with a fresh token never is.
 */
export function randomHex(bytes: number): string {
  const buf = globalThis.crypto.getRandomValues(new Uint8Array(bytes));
  let out = "";
  for (const b of buf) out += b.toString(16).padStart(2, "0");
  return out;
}
