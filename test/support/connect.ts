/**
 * Seeds a store with an authorized connector against the test bed, the way a human login
 * would leave it: dynamic client registration, PKCE authorization code with the resource
 * indicator, through the bed's auto-consent. Tests of the unattended surfaces start here;
 * the login command itself has its own tests.
 */
import * as oauth from "oauth4webapi";
import { type ConnectorRecord, type ConnectorSettings, initialState } from "../../src/core/record.js";
import { tokenSetFromResponse } from "../../src/oauth/token-response.js";
import type { Store } from "../../src/store/types.js";

export interface BedLike {
  issuer: string;
  mcpUrl: string;
}

export interface ConnectOptions {
  scope?: string;
  settings?: ConnectorSettings;
  /** Local time to stamp on the token set (for tests that run the manager on a ManualClock). */
  now?: number;
}

const insecure = { [oauth.allowInsecureRequests]: true } as const;

export async function connectTestBed(
  bed: BedLike,
  store: Store,
  name: string,
  options: ConnectOptions = {},
): Promise<ConnectorRecord> {
  const issuer = new URL(bed.issuer);
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { ...insecure, algorithm: "oauth2" }),
  );
  const redirectUri = "http://127.0.0.1:9/callback";
  const registration = await fetch(as.registration_endpoint!, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      client_name: `tokenkeeper test ${name}`,
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      application_type: "native",
    }),
  });
  if (registration.status !== 201)
    throw new Error(`registration failed: ${registration.status} ${await registration.text()}`);
  const clientInfo = (await registration.json()) as { client_id: string };
  const client: oauth.Client = { client_id: clientInfo.client_id, token_endpoint_auth_method: "none" };

  const scope = options.scope ?? "mcp:tools offline_access";
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const authUrl = new URL(as.authorization_endpoint!);
  for (const [k, v] of Object.entries({
    client_id: client.client_id,
    response_type: "code",
    redirect_uri: redirectUri,
    scope,
    state,
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    resource: bed.mcpUrl,
    prompt: "consent",
  })) {
    authUrl.searchParams.set(k, v);
  }

  // Follow redirects by hand until the authorization server sends us to the redirect URI.
  let location = authUrl.href;
  for (let hop = 0; hop < 10 && !location.startsWith(redirectUri); hop++) {
    const res = await fetch(location, { redirect: "manual" });
    const next = res.headers.get("location");
    await res.body?.cancel();
    if (!next) throw new Error(`authorization stopped at ${res.status} without a redirect`);
    location = new URL(next, location).href;
  }
  const params = oauth.validateAuthResponse(as, client, new URL(location), state);
  const receivedBefore = Date.now();
  const response = await oauth.authorizationCodeGrantRequest(
    as,
    client,
    oauth.None(),
    params,
    redirectUri,
    verifier,
    {
      ...insecure,
      additionalParameters: { resource: bed.mcpUrl },
    },
  );
  const result = await oauth.processAuthorizationCodeResponse(as, client, response);
  const now = options.now ?? receivedBefore;
  const { tokens } = tokenSetFromResponse({
    response: result as unknown as Parameters<typeof tokenSetFromResponse>[0]["response"],
    receivedAt: now,
    requestedScope: scope,
  });
  const record: ConnectorRecord = {
    schema: 1,
    name,
    grant: "authorization_code",
    scope,
    server: {
      mcpUrl: bed.mcpUrl,
      resource: bed.mcpUrl,
      issuer: as.issuer,
      metadata: { ...(as as unknown as Record<string, unknown>), issuer: as.issuer },
    },
    client: {
      kind: "dynamic",
      clientId: client.client_id,
      tokenEndpointAuthMethod: "none",
      redirectUris: [redirectUri],
    },
    tokens,
    state: initialState(),
    settings: options.settings ?? {},
    createdAt: now,
    updatedAt: now,
  };
  const existing = await store.get(name);
  await store.put(name, record, existing?.version ?? null);
  return record;
}
