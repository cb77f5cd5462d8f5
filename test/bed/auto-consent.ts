// The bed's "user": an interaction endpoint that logs in and consents (or denies) by itself, so
// an authorization-code or device flow completes without a browser or any HTML parsing.
import type { Interaction, KoaContext, Provider } from "oidc-provider";

export interface AutoConsentConfig {
  consent: () => "auto" | "deny";
  accountId: string;
  /** Scopes a resource server accepts, or undefined for an unknown resource. */
  resourceScopes: (resource: string) => string[] | undefined;
  /** Resource assumed when the request names none (features.resourceIndicators.defaultResource). */
  defaultResource: () => string | undefined;
  /** OIDC scopes the provider knows (its `scopes` configuration). */
  oidcScopes: ReadonlySet<string>;
}

const INTERACTION_PATH = /^\/interaction\/([\w-]+)$/;
/**
 * Where oidc-provider resumes after an interaction: its default authorization (/auth/:uid) or
 * device (/device/:uid) resume routes. (/device/auth is the device authorization endpoint.)
 */
const RESUME_PATH = /^\/(?:auth|device)\/([\w-]+)$/;

/** `interactions.url` for oidc-provider. */
export function interactionUrl(_ctx: unknown, interaction: { uid: string }): string {
  return `/interaction/${interaction.uid}`;
}

/**
 * Koa middleware answering GET /interaction/:uid, and letting cookie-less user agents resume.
 *
 * The interaction is looked up by the uid in the path rather than by oidc-provider's
 * `_interaction` cookie, and login and consent are granted in one round: a client following
 * redirects with plain fetch keeps no cookies, so it must not need a second, session-bound
 * round trip.
 */
export function autoConsent(provider: Provider, config: AutoConsentConfig) {
  return async (ctx: KoaContext, next: () => Promise<void>): Promise<void> => {
    if (ctx.method !== "GET") return next();

    const resume = RESUME_PATH.exec(ctx.path);
    if (resume && ctx.path !== "/device/auth") {
      supplyResumeCookie(ctx, resume[1] as string);
      return next();
    }

    const match = INTERACTION_PATH.exec(ctx.path);
    if (!match) return next();
    const interaction = await provider.Interaction.find(match[1] as string);
    if (!interaction) {
      ctx.status = 400;
      ctx.type = "text/plain";
      ctx.body = "interaction not found or expired";
      return;
    }
    interaction.result =
      config.consent() === "deny"
        ? { error: "access_denied", error_description: "End-User denied the request (test bed)" }
        : await approve(provider, interaction, config);
    await interaction.save(Math.max(1, interaction.exp - Math.floor(Date.now() / 1000)));
    ctx.status = 303;
    ctx.redirect(interaction.returnTo);
  };
}

/**
 * oidc-provider finds the interaction being resumed through the `_interaction_resume` cookie it
 * set on the authorization response. A browser would send it back; a cookie-less client cannot,
 * so when it is missing the bed supplies it from the path (the uid is the cookie's value).
 */
function supplyResumeCookie(ctx: KoaContext, uid: string): void {
  const cookie = ctx.req.headers.cookie ?? "";
  if (/(?:^|;\s*)_interaction_resume=/.test(cookie)) return;
  ctx.req.headers.cookie = cookie ? `${cookie}; _interaction_resume=${uid}` : `_interaction_resume=${uid}`;
}

/** Grants everything requested: every OIDC scope and, per requested resource, its scopes. */
async function approve(provider: Provider, interaction: Interaction, config: AutoConsentConfig) {
  const { params, session, grantId } = interaction;
  const accountId = session?.accountId ?? config.accountId;
  const clientId = String(params.client_id);
  const requested = typeof params.scope === "string" ? params.scope.split(" ").filter(Boolean) : [];

  const grant =
    (grantId ? await provider.Grant.find(grantId) : undefined) ?? new provider.Grant({ accountId, clientId });
  const oidc = requested.filter((s) => config.oidcScopes.has(s));
  if (oidc.length) grant.addOIDCScope(oidc.join(" "));

  const details = interaction.prompt.details;
  if (Array.isArray(details.missingOIDCClaims)) grant.addOIDCClaims(details.missingOIDCClaims as string[]);

  const resources = toList(params.resource);
  const fallback = config.defaultResource();
  if (resources.length === 0 && fallback) resources.push(fallback);
  for (const resource of resources) {
    const accepted = new Set(config.resourceScopes(resource) ?? []);
    const scopes = requested.filter((s) => accepted.has(s));
    if (scopes.length) grant.addResourceScope(resource, scopes.join(" "));
  }

  const result: Record<string, unknown> = { consent: { grantId: await grant.save() } };
  // Log in when there is no session yet (or a login is demanded); re-logging an existing session
  // for a consent-only interaction would needlessly reset its auth_time.
  if (!session?.accountId || interaction.prompt.name === "login")
    result.login = { accountId, remember: true };
  return result;
}

function toList(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === "string");
  return [];
}
