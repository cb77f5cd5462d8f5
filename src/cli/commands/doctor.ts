/**
 * `tokenkeeper doctor <mcp-server-url>`: runs discovery step by step without registering,
 * storing or authorizing anything, and prints a checklist with a fix for each failure.
 */
import { EXIT, isTokenkeeperError } from "../../core/errors.js";
import {
  type AuthorizationServerResult,
  type Capabilities,
  canonicalServerUri,
  capabilitiesOf,
  chooseAuthorizationServer,
  type DiscoveryDeps,
  fetchAuthorizationServerMetadata,
  fetchLegacyAuthorizationServer,
  fetchProtectedResourceMetadata,
  type ProbeResult,
  type ProtectedResourceResult,
  probeServer,
  type Trace,
} from "../../oauth/discovery.js";
import { describeUrl } from "../../oauth/http.js";
import { interactiveCommand, parseFlags, UsageError } from "../args.js";
import { networkDeps } from "../context.js";
import { writeWireJson } from "../output.js";

const USAGE = `Usage: tokenkeeper doctor <mcp-server-url> [--authorization-server URL] [--json]

Runs discovery against an MCP server without changing anything (no registration, no login)
and prints a checklist with a fix for each failure. Exit codes: 0 no check failed, 1 at least
one failed, 64 usage.`;

export type CheckStatus = "pass" | "warn" | "fail" | "info" | "skip";

export interface Check {
  id: string;
  title: string;
  status: CheckStatus;
  detail: string;
  fix?: string;
}

export interface DoctorReport {
  server: string;
  ok: boolean;
  checks: Check[];
  resourceMetadataUrl?: string;
  authorizationServer?: string;
  authorizationServerMetadataUrl?: string;
  /** Every request discovery made, in order (origin and path only). */
  trace: Trace;
}

export const doctorCommand = interactiveCommand({
  name: "doctor",
  summary: "check an MCP server's authorization setup, with a fix for each problem",
  usage: USAGE,
  async run(args, ctx) {
    const { values, positionals } = parseFlags(args, {
      json: { type: "boolean" },
      "authorization-server": { type: "string" },
    });
    if (positionals.length !== 1) throw new UsageError("give exactly one <mcp-server-url>");
    const report = await diagnose(positionals[0]!, networkDeps(ctx), values["authorization-server"]);
    if (values.json) writeWireJson(ctx, report);
    else ctx.stdout.write(renderReport(report));
    return report.ok ? EXIT.ok : EXIT.failure;
  },
});

function explain(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function problemOf(error: unknown): string | undefined {
  return isTokenkeeperError(error) ? ((error.fields.problem as string | undefined) ?? error.code) : undefined;
}

type Step = "reachable" | "prm" | "as_metadata";

/** The fix for a failed discovery step, by the error's stable problem word. */
function fixFor(error: unknown, step: Step): string {
  const problem = problemOf(error);
  switch (problem) {
    case "transient":
      return "the server did not answer usefully; check the URL, the network and any proxy, then run doctor again";
    case "insecure_endpoint":
      return "every endpoint must use HTTPS (only loopback hosts may use http); fix the server's configuration or the URL";
    case "invalid_url":
      return "give the MCP endpoint as an absolute https:// URL";
    case "resource_mismatch":
      return "the metadata's `resource` must be the MCP server's URL (or a parent path on the same origin), RFC 9728 §3.3; fix the server's resource identifier";
    case "no_resource_metadata":
      return "the server must publish RFC 9728 protected resource metadata (MCP authorization 2025-06-18 and later): name it in WWW-Authenticate resource_metadata or serve /.well-known/oauth-protected-resource";
    case "issuer_mismatch":
      return "the authorization server's metadata must state exactly the issuer it was fetched for (RFC 8414 §3.3); fix its issuer configuration or the protected resource's authorization_servers entry";
    case "no_authorization_server_metadata":
      return "the authorization server must publish RFC 8414 or OpenID Connect discovery metadata at a well-known URL";
    case "cross_origin_redirect":
    case "too_many_redirects":
      return "serve the metadata directly at its well-known URL; discovery does not follow redirects to other origins";
    case "invalid_metadata":
    case "invalid_json":
      return step === "prm"
        ? "fix the protected resource metadata document (RFC 9728 §2)"
        : "fix the authorization server metadata document (RFC 8414 §2)";
    case "authorization_server_not_listed":
      return "choose one of the authorization servers the resource lists, or drop --authorization-server";
    case "redirect":
      return "use the final MCP endpoint URL: the server redirects, and redirects are not followed";
    default:
      return step === "reachable" ? "check the URL and that the server is running" : "see the detail above";
  }
}

/** The check for a discovery step that threw: failed, with the error as its detail and its fix. */
function failedCheck(id: string, title: string, error: unknown, step: Step): Check {
  return { id, title, status: "fail", detail: explain(error), fix: fixFor(error, step) };
}

export async function diagnose(
  input: string,
  deps: DiscoveryDeps,
  preferredAs?: string,
): Promise<DoctorReport> {
  const trace: Trace = [];
  const checks: Check[] = [];
  const report = (server: string): DoctorReport => ({
    server,
    ok: !checks.some((c) => c.status === "fail"),
    checks,
    trace,
  });
  const skipRest = (from: string, server: string): DoctorReport => {
    for (const [id, title] of REMAINING.slice(REMAINING.findIndex(([i]) => i === from))) {
      checks.push({ id, title, status: "skip", detail: "not checked: an earlier step failed" });
    }
    return report(server);
  };

  let url: string;
  try {
    url = canonicalServerUri(input);
  } catch (error) {
    checks.push(failedCheck("reachable", "server reachable", error, "reachable"));
    return skipRest("challenge", input);
  }

  // 1. Reachability and the challenge.
  let probe: ProbeResult;
  try {
    probe = await probeServer(url, deps, trace);
    checks.push({
      id: "reachable",
      title: "server reachable",
      status: "pass",
      detail: `answered ${probe.status} to an unauthenticated initialize`,
    });
  } catch (error) {
    checks.push(failedCheck("reachable", "server reachable", error, "reachable"));
    return skipRest("challenge", url);
  }
  const challenge = probe.challenge;
  if (probe.status === 401 && challenge?.resourceMetadata) {
    checks.push({
      id: "challenge",
      title: "401 carries resource_metadata",
      status: "pass",
      detail: `WWW-Authenticate names ${describeUrl(challenge.resourceMetadata)}${challenge.scope ? ` and scope "${challenge.scope}"` : ""}`,
    });
  } else if (probe.status === 401) {
    checks.push({
      id: "challenge",
      title: "401 carries resource_metadata",
      status: "warn",
      detail: challenge
        ? "the Bearer challenge has no resource_metadata parameter"
        : "the 401 has no Bearer WWW-Authenticate challenge",
      fix: 'send `WWW-Authenticate: Bearer resource_metadata="<metadata URL>"` on 401 (RFC 9728 §5.1); clients fall back to the well-known URIs meanwhile',
    });
  } else if (probe.status >= 200 && probe.status < 300) {
    // It may protect only later requests (tools/call…): its well-known metadata says so.
    try {
      await fetchProtectedResourceMetadata(url, undefined, deps, []);
      checks.push({
        id: "challenge",
        title: "401 carries resource_metadata",
        status: "warn",
        detail: `initialize answered ${probe.status} without a token; the server publishes protected resource metadata, so later requests may need one`,
        fix: "nothing to fix if the server protects only some requests: login reads the well-known metadata",
      });
    } catch {
      checks.push({
        id: "challenge",
        title: "401 carries resource_metadata",
        status: "fail",
        detail: `answered ${probe.status} without a token and publishes no protected resource metadata: the server does not require authorization`,
        fix: `nothing to log in to: use the server directly, or through \`tokenkeeper proxy ${url} --no-auth\``,
      });
      return skipRest("resource_metadata", url);
    }
  } else {
    checks.push({
      id: "challenge",
      title: "401 carries resource_metadata",
      status: "fail",
      detail: `answered ${probe.status}${probe.location ? ` (redirect to ${describeUrl(probe.location)})` : ""} instead of 401`,
      fix: probe.location
        ? "use the final MCP endpoint URL: the server redirects, and redirects are not followed"
        : "a protected MCP endpoint answers 401 with a Bearer challenge to a request without a token",
    });
  }

  // 2. Protected-resource metadata.
  let prm: ProtectedResourceResult;
  try {
    prm = await fetchProtectedResourceMetadata(url, challenge, deps, trace);
    checks.push({
      id: "resource_metadata",
      title: "protected resource metadata valid",
      status: "pass",
      detail: `${describeUrl(prm.url)}: resource ${prm.metadata.resource}, authorization servers ${(prm.metadata.authorization_servers ?? []).join(", ") || "(none)"}`,
    });
  } catch (error) {
    if (probe.status !== 401 || challenge?.resourceMetadata || problemOf(error) !== "no_resource_metadata") {
      checks.push(failedCheck("resource_metadata", "protected resource metadata valid", error, "prm"));
      return skipRest("authorization_server", url);
    }
    return legacyReport(url, error, deps, trace, checks, { report, skipRest });
  }

  // 3. Authorization-server metadata.
  let as: AuthorizationServerResult;
  try {
    const issuer = chooseAuthorizationServer(prm, preferredAs);
    as = await fetchAuthorizationServerMetadata(issuer, deps, trace);
    checks.push({
      id: "authorization_server",
      title: "authorization server metadata valid, issuer consistent",
      status: "pass",
      detail: `${describeUrl(as.url)} (${as.kind === "oauth" ? "RFC 8414" : "OpenID discovery"}), issuer ${as.issuer}, all endpoints HTTPS or loopback`,
    });
  } catch (error) {
    checks.push(
      failedCheck(
        "authorization_server",
        "authorization server metadata valid, issuer consistent",
        error,
        "as_metadata",
      ),
    );
    const r = skipRest("pkce", url);
    r.resourceMetadataUrl = prm.url;
    return r;
  }

  checks.push(...capabilityChecks(capabilitiesOf(as.metadata), as));
  return {
    ...report(url),
    resourceMetadataUrl: prm.url,
    authorizationServer: as.issuer,
    authorizationServerMetadataUrl: as.url,
  };
}

/**
 * A 401 and no protected-resource metadata anywhere: a 2025-03-26 server, which login still
 * serves (authorization-server metadata at the origin, else the default endpoints). A warning,
 * not a failure; the authorization-server checks then run on what login would use.
 */
async function legacyReport(
  url: string,
  error: unknown,
  deps: DiscoveryDeps,
  trace: Trace,
  checks: Check[],
  end: { report: (server: string) => DoctorReport; skipRest: (from: string, server: string) => DoctorReport },
): Promise<DoctorReport> {
  checks.push({
    id: "resource_metadata",
    title: "protected resource metadata valid",
    status: "warn",
    detail: `${error instanceof Error ? error.message : String(error)}; treated as a 2025-03-26 server`,
    fix: "publish RFC 9728 protected resource metadata (MCP authorization 2025-06-18 and later); until then login uses the server's origin as its authorization server",
  });
  let as: AuthorizationServerResult;
  try {
    as = await fetchLegacyAuthorizationServer(url, deps, trace);
    const defaults = !trace.some((t) => t.url === describeUrl(as.url) && t.outcome === "ok");
    checks.push({
      id: "authorization_server",
      title: "authorization server metadata valid, issuer consistent",
      status: defaults ? "warn" : "pass",
      detail: defaults
        ? `no metadata at ${describeUrl(as.url)}: the 2025-03-26 default endpoints /authorize, /token and /register at ${as.issuer}`
        : `${describeUrl(as.url)} (RFC 8414, at the server's origin), issuer ${as.issuer}`,
      ...(defaults ? { fix: "publish RFC 8414 metadata; the default endpoints are assumed, not known" } : {}),
    });
  } catch (cause) {
    checks.push(
      failedCheck(
        "authorization_server",
        "authorization server metadata valid, issuer consistent",
        cause,
        "as_metadata",
      ),
    );
    return end.skipRest("pkce", url);
  }
  checks.push(...capabilityChecks(capabilitiesOf(as.metadata), as));
  return { ...end.report(url), authorizationServer: as.issuer, authorizationServerMetadataUrl: as.url };
}

const REMAINING: [string, string][] = [
  ["challenge", "401 carries resource_metadata"],
  ["resource_metadata", "protected resource metadata valid"],
  ["authorization_server", "authorization server metadata valid, issuer consistent"],
  ["pkce", "PKCE S256 supported"],
  ["registration", "client registration possible"],
  ["refresh_token", "refresh_token grant advertised"],
  ["device_flow", "device flow advertised"],
  ["revocation", "revocation endpoint"],
  ["offline_access", "offline_access scope"],
  ["client_credentials", "client_credentials grant"],
  ["iss", "authorization response iss (RFC 9207)"],
];

/** The checks that follow from valid metadata: pure. */
export function capabilityChecks(c: Capabilities, as: AuthorizationServerResult): Check[] {
  const checks: Check[] = [];
  checks.push(
    c.pkceS256
      ? {
          id: "pkce",
          title: "PKCE S256 supported",
          status: "pass",
          detail: "code_challenge_methods_supported lists S256",
        }
      : {
          id: "pkce",
          title: "PKCE S256 supported",
          status: "fail",
          detail: `code_challenge_methods_supported is ${as.metadata.code_challenge_methods_supported?.join(", ") || "absent"}`,
          fix: "the authorization server must advertise S256 in code_challenge_methods_supported; MCP clients refuse the browser flow otherwise (--client-credentials may still work)",
        },
  );
  if (c.dynamicRegistration || c.clientIdMetadataDocument) {
    const ways = [
      c.clientIdMetadataDocument && "client ID metadata documents (--client-metadata-url)",
      c.dynamicRegistration && "dynamic client registration",
    ].filter(Boolean);
    checks.push({
      id: "registration",
      title: "client registration possible",
      status: "pass",
      detail: `supports ${ways.join(" and ")}`,
    });
  } else {
    checks.push({
      id: "registration",
      title: "client registration possible",
      status: "warn",
      detail:
        "no registration_endpoint and no client_id_metadata_document_supported: a pre-registered client is needed",
      fix: "this server does not support dynamic client registration: register a client with the provider and use `login --client-id`",
    });
  }
  if (c.refreshToken === true) {
    checks.push({
      id: "refresh_token",
      title: "refresh_token grant advertised",
      status: "pass",
      detail: "grant_types_supported lists refresh_token",
    });
  } else {
    checks.push({
      id: "refresh_token",
      title: "refresh_token grant advertised",
      status: "warn",
      detail:
        c.refreshToken === undefined
          ? "grant_types_supported is absent, so refresh support is unknown"
          : "grant_types_supported does not list refresh_token",
      fix:
        c.refreshToken === undefined
          ? "login will report whether a refresh token was issued; ask the provider to list its grant types (RFC 8414 §2)"
          : "without refresh tokens a human must log in again whenever the access token expires; use --client-credentials if the server allows it",
    });
  }
  checks.push(
    c.deviceFlow
      ? {
          id: "device_flow",
          title: "device flow advertised",
          status: "pass",
          detail: `device_authorization_endpoint ${describeUrl(as.metadata.device_authorization_endpoint!)}`,
        }
      : {
          id: "device_flow",
          title: "device flow advertised",
          status: "warn",
          detail: "no device_authorization_endpoint: `login --device` is not available",
          fix: "on a host without a browser, log in with --callback-port and an SSH port forward, or log in elsewhere into a shared store",
        },
  );
  checks.push(
    c.revocation
      ? {
          id: "revocation",
          title: "revocation endpoint",
          status: "pass",
          detail: `revocation_endpoint ${describeUrl(as.metadata.revocation_endpoint!)}`,
        }
      : {
          id: "revocation",
          title: "revocation endpoint",
          status: "warn",
          detail: "no revocation_endpoint (RFC 7009)",
          fix: "`logout --revoke` cannot end the grant at the server; revoke access in the provider's settings instead",
        },
  );
  checks.push(
    c.offlineAccess
      ? {
          id: "offline_access",
          title: "offline_access scope",
          status: "pass",
          detail: "scopes_supported lists offline_access; login asks for it",
        }
      : {
          id: "offline_access",
          title: "offline_access scope",
          status: "info",
          detail: "not advertised; many servers issue refresh tokens without it",
        },
  );
  checks.push({
    id: "client_credentials",
    title: "client_credentials grant",
    status: "info",
    detail: c.clientCredentials
      ? "advertised: `login --client-credentials` can run without any human"
      : "not advertised",
  });
  checks.push({
    id: "iss",
    title: "authorization response iss (RFC 9207)",
    status: "info",
    detail: c.issParameter
      ? "advertised: login checks it against mix-up attacks"
      : "not advertised; login checks iss only when present",
  });
  return checks;
}

const MARK: Record<CheckStatus, string> = {
  pass: "PASS",
  warn: "WARN",
  fail: "FAIL",
  info: "INFO",
  skip: "SKIP",
};

export function renderReport(report: DoctorReport): string {
  const lines = [`Checking ${report.server}`, ""];
  for (const c of report.checks) {
    lines.push(`  ${MARK[c.status]}  ${c.title}: ${c.detail}`);
    if (c.fix) lines.push(`        fix: ${c.fix}`);
  }
  const count = (s: CheckStatus) => report.checks.filter((c) => c.status === s).length;
  lines.push(
    "",
    `${count("pass")} passed, ${count("warn")} warnings, ${count("fail")} failed${count("skip") ? `, ${count("skip")} skipped` : ""}`,
    "",
  );
  return lines.join("\n");
}
