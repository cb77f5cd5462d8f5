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
 *
 * private_key_jwt (RFC 7523 §2.2, OpenID Connect Core §9): a JWT signed with the client's
 * private key replaces the secret; oauth4webapi builds it (iss = sub = client_id, aud = the
 * issuer, a 60 s lifetime, a fresh jti). The key is read from its PEM file for each grant, so
 * replacing the file rotates the key without touching the store.
 */
import { createPrivateKey, type KeyObject, webcrypto } from "node:crypto";
import { readFile } from "node:fs/promises";
import * as oauth from "oauth4webapi";
import { ConfigError, LoginError } from "../core/errors.js";
import type { ClientRegistration } from "../core/record.js";
import { formEncode } from "../core/secret.js";
import type { AuthorizationServerMetadata } from "./metadata-schemas.js";

export { formEncode } from "../core/secret.js";

/** The Authorization header value for client_secret_basic. */
export function basicCredentials(clientId: string, secret: string): string {
  return `Basic ${Buffer.from(`${formEncode(clientId)}:${formEncode(secret)}`, "utf8").toString("base64")}`;
}

export function clientSecretBasic(secret: string): oauth.ClientAuth {
  return (_as, client, _body, headers) => {
    headers.set("authorization", basicCredentials(client.client_id, secret));
  };
}

export interface SigningKey {
  key: webcrypto.CryptoKey;
  /** The JWS algorithm the key signs with (RFC 7518). */
  alg: string;
}

/** The JWS algorithm and WebCrypto import parameters for a private key. */
function algorithmOf(key: KeyObject): {
  alg: string;
  params: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams | webcrypto.Algorithm;
} {
  switch (key.asymmetricKeyType) {
    case "ec": {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      const named = {
        prime256v1: ["P-256", "ES256"],
        secp384r1: ["P-384", "ES384"],
        secp521r1: ["P-521", "ES512"],
      }[curve ?? ""];
      if (!named) throw new ConfigError(`unsupported EC curve ${curve ?? "(unknown)"} for private_key_jwt`);
      return { alg: named[1]!, params: { name: "ECDSA", namedCurve: named[0]! } };
    }
    case "rsa":
      return { alg: "RS256", params: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } };
    case "ed25519":
      return { alg: "EdDSA", params: { name: "Ed25519" } };
    default:
      throw new ConfigError(
        `unsupported key type ${key.asymmetricKeyType ?? "(unknown)"} for private_key_jwt: use an EC (P-256/384/521), RSA or Ed25519 key`,
      );
  }
}

/** Reads a PEM private key (PKCS#8, or SEC1/PKCS#1) for signing client assertions. */
export async function loadSigningKey(file: string): Promise<SigningKey> {
  let pem: string;
  try {
    pem = await readFile(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "unreadable";
    throw new ConfigError(`cannot read the private key file ${file} (${code})`, { file });
  }
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(pem);
  } catch {
    throw new ConfigError(`${file} does not hold a PEM private key`, { file });
  }
  const { alg, params } = algorithmOf(keyObject);
  const der = keyObject.export({ type: "pkcs8", format: "der" });
  const key = await webcrypto.subtle.importKey("pkcs8", der, params, false, ["sign"]);
  return { key, alg };
}

export function privateKeyJwt(file: string): oauth.ClientAuth {
  return async (as, client, body, headers) => {
    const { key } = await loadSigningKey(file);
    await oauth.PrivateKeyJwt(key as Parameters<typeof oauth.PrivateKeyJwt>[0])(as, client, body, headers);
  };
}

/**
 * A pre-registered client that authenticates with private_key_jwt. Checked at login, so a
 * wrong file or an algorithm the server does not take fails now, not at the first refresh.
 */
export async function privateKeyJwtClient(
  clientId: string,
  file: string,
  metadata: AuthorizationServerMetadata,
): Promise<ClientRegistration> {
  if (!clientId.trim()) throw new ConfigError("--client-id must not be empty");
  const methods = metadata.token_endpoint_auth_methods_supported as string[] | undefined;
  if (methods && !methods.includes("private_key_jwt")) {
    throw new LoginError(
      `the authorization server ${metadata.issuer} does not accept private_key_jwt (it lists ${methods.join(", ")})`,
      { problem: "unsupported_auth_method" },
    );
  }
  const { alg } = await loadSigningKey(file);
  const algs = metadata.token_endpoint_auth_signing_alg_values_supported as unknown;
  if (Array.isArray(algs) && !algs.includes(alg)) {
    throw new LoginError(
      `the authorization server ${metadata.issuer} takes client assertions signed with ${algs.join(", ")}, and the key in ${file} signs with ${alg}`,
      { problem: "unsupported_signing_alg" },
    );
  }
  return {
    kind: "preregistered",
    clientId: clientId.trim(),
    tokenEndpointAuthMethod: "private_key_jwt",
    privateKeyFile: file,
  };
}
