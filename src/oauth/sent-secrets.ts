/**
 * What a request to an authorization server carried that must never come back out of
 * Tokenkeeper: read from the request as it goes on the wire (form parameters and the
 * Authorization header), so every grant — refresh, code, device code, client credentials,
 * a client assertion — is covered without each caller listing its own credentials. Server
 * text answering that request passes through `scrub` before it reaches an error.
 */
import { scrubServerText } from "../core/secret.js";

/** Form parameters that carry a credential (RFC 6749 §§2.3.1, 4.1.3, 6; RFC 7636 §4.5; RFC 8628 §3.4; RFC 7523 §2.2). */
const CREDENTIAL_PARAMS = [
  "refresh_token",
  "code",
  "code_verifier",
  "client_secret",
  "client_assertion",
  "assertion",
  "device_code",
  "token",
  "subject_token",
  "actor_token",
  "password",
];

export class SentSecrets {
  readonly #values = new Set<string>();

  /** Adds credential values (e.g. the client secret, known before the request is built). */
  add(...values: (string | undefined)[]): this {
    for (const v of values) if (typeof v === "string" && v !== "") this.#values.add(v);
    return this;
  }

  /** Records the credentials in an outgoing request's body and Authorization header. */
  noteRequest(init: RequestInit | undefined): void {
    const body = init?.body;
    let form: URLSearchParams | undefined;
    if (body instanceof URLSearchParams) form = body;
    else if (typeof body === "string") form = new URLSearchParams(body);
    for (const name of CREDENTIAL_PARAMS) for (const v of form?.getAll(name) ?? []) this.add(v);

    const authorization = new Headers(init?.headers).get("authorization");
    const match = authorization ? /^(\S+)\s+(\S+)/.exec(authorization) : null;
    if (!match) return;
    const [, scheme, credential] = match;
    this.add(credential);
    if (scheme!.toLowerCase() === "basic") {
      // RFC 6749 §2.3.1: base64 of form-encoded client_id ":" client_secret.
      const decoded = Buffer.from(credential!, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon >= 0) {
        const secret = decoded.slice(colon + 1);
        this.add(secret);
        try {
          this.add(decodeURIComponent(secret.replace(/\+/g, " ")));
        } catch {
          // not percent-encoded after all: the raw form is already recorded
        }
      }
    }
  }

  /** Server text with every recorded value removed (see scrubServerText). */
  scrub(text: string, maxLength = 300): string {
    return scrubServerText(text, this.#values, maxLength);
  }
}
