/**
 * Client authentication at the token endpoint, where oauth4webapi's own would not interoperate.
 *
 * client_secret_basic: RFC 6749 §2.3.1 has the client id and secret form-encoded before they go
 * into the Basic credentials. oauth4webapi encodes with the strict HTML 4.01 rules, which also
 * escape `-`, `.`, `_`, `~`, `*`, `!`, `'`, `(` and `)`; many servers (the MCP SDK's among them)
 * compare the decoded Basic credentials with the raw values and so reject `pre-registered-client`
 * sent as `pre%2Dregistered%2Dclient`. We encode with the application/x-www-form-urlencoded
 * serializer of the URL Standard (what URLSearchParams does), which leaves alphanumerics and
 * `*-._` alone: a server that decodes, as it should, gets the same values either way, and a
 * server that does not still gets ids and secrets made of those characters unchanged.
 */
import type * as oauth from "oauth4webapi";

/** application/x-www-form-urlencoded (URL Standard §5.2) of one value. */
export function formEncode(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2);
}

/** The Authorization header value for client_secret_basic. */
export function basicCredentials(clientId: string, secret: string): string {
  return `Basic ${Buffer.from(`${formEncode(clientId)}:${formEncode(secret)}`, "utf8").toString("base64")}`;
}

export function clientSecretBasic(secret: string): oauth.ClientAuth {
  return (_as, client, _body, headers) => {
    headers.set("authorization", basicCredentials(client.client_id, secret));
  };
}
