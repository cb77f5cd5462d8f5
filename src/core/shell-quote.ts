/**
 * POSIX shell quoting for the command lines Tokenkeeper prints for a person to paste (the
 * re-authorization `action`). Parts of those lines come from servers (a scope from a
 * WWW-Authenticate challenge, a URL): inside single quotes no character is special to a POSIX
 * shell except the closing quote itself, which is written as '\'' (close, escaped quote, reopen).
 */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
