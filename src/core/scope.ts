/**
 * Scope strings from servers, validated once at the edge. RFC 6749 §3.3:
 *   scope       = scope-token *( SP scope-token )
 *   scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
 * so a scope never holds a control character, a double quote, a backslash or non-ASCII text.
 * A scope that breaks this is refused with a protocol error naming where it came from: it
 * would otherwise be sent back to the authorization server, stored, and printed in the
 * re-authorization command a person pastes into a shell.
 */
import { ProtocolError } from "./errors.js";

const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;
/** Far above any real scope list; bounds what is stored and printed. */
export const MAX_SCOPE_LENGTH = 4096;

/** Whether `scope` is a valid RFC 6749 §3.3 scope (tokens separated by single or repeated spaces). */
export function isValidScope(scope: string): boolean {
  if (scope.length > MAX_SCOPE_LENGTH) return false;
  const tokens = scope.split(" ").filter((t) => t !== "");
  return tokens.length > 0 && tokens.every((t) => SCOPE_TOKEN.test(t));
}

/**
 * The scope, with runs of spaces collapsed, or a ProtocolError (exit 76) naming `source`
 * ("the WWW-Authenticate challenge of https://…"). The offending value is not quoted: it is
 * server text, and the point is that it may be hostile.
 */
export function validScope(scope: string, source: string): string {
  if (!isValidScope(scope)) {
    throw new ProtocolError(
      `${source} names a scope that is not a valid OAuth scope (RFC 6749 §3.3 allows printable ASCII other than space, '"' and '\\', separated by spaces${scope.length > MAX_SCOPE_LENGTH ? `, and at most ${MAX_SCOPE_LENGTH} characters` : ""}); refusing it`,
      { field: "scope", source, problem: "invalid_scope_value" },
    );
  }
  return scope
    .split(" ")
    .filter((t) => t !== "")
    .join(" ");
}
