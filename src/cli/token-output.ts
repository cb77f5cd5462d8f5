/**
 * What `tokenkeeper token NAME [--json]` and `tokenkeeper headers NAME` print on success, one
 * formatter for the full commands and for the fast path (fast-token.ts), so the two can only
 * print the same bytes. It imports nothing: the fast path's bundle stays as small as it was.
 * The caller has already checked the token is a b64token (RFC 6750 §2.1), safe on any line.
 */

export interface PrintedToken {
  connector: string;
  /** The revealed access token. */
  accessToken: string;
  tokenType: string;
  /** Epoch milliseconds, or null when the server gave no lifetime. */
  expiresAt: number | null;
}

/** The stdout text: the token alone, its JSON form, or the headers object. */
export function tokenOutput(command: "token" | "headers", json: boolean, token: PrintedToken): string {
  // `headers` prints JSON already (Claude Code reads it); --json changes nothing.
  // RFC 6750 §2.1: the Bearer scheme; the token is all the value holds.
  if (command === "headers") return `${JSON.stringify({ Authorization: `Bearer ${token.accessToken}` })}\n`;
  if (!json) return `${token.accessToken}\n`;
  // The one JSON dialect (snake_case, ISO-8601 UTC), and the shape of the run endpoint's answer.
  return `${JSON.stringify({
    connector: token.connector,
    access_token: token.accessToken,
    token_type: token.tokenType,
    expires_at: token.expiresAt === null ? null : new Date(token.expiresAt).toISOString(),
  })}\n`;
}
