// Minimal typings for the parts of oidc-provider (and the Koa it extends) that the test bed uses.
// oidc-provider ships no declarations and no @types package is installed; if one is added later,
// delete this file.
declare module "oidc-provider" {
  import type { IncomingMessage, ServerResponse } from "node:http";

  /** The slice of a Koa context the bed touches. */
  export interface KoaContext {
    method: string;
    path: string;
    status: number;
    body: unknown;
    type: string;
    /** Set to false to take over the raw response (Koa will not write one). */
    respond?: boolean;
    req: IncomingMessage;
    res: ServerResponse;
    set(field: string, value: string): void;
    redirect(url: string): void;
    /** Present on requests routed by oidc-provider. */
    oidc?: OidcContext;
  }

  export type Next = () => Promise<void>;
  export type Middleware = (ctx: KoaContext, next: Next) => Promise<void> | void;

  export interface OidcContext {
    params?: Record<string, unknown>;
  }

  /** What oidc-provider stores through an adapter: a JSON payload with a few well-known fields. */
  export interface AdapterPayload {
    [key: string]: unknown;
    jti?: string;
    kind?: string;
    exp?: number;
    iat?: number;
    grantId?: string;
    userCode?: string;
    uid?: string;
    consumed?: number;
    clientId?: string;
  }

  export interface Adapter {
    upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void>;
    find(id: string): Promise<AdapterPayload | undefined>;
    findByUserCode(userCode: string): Promise<AdapterPayload | undefined>;
    findByUid(uid: string): Promise<AdapterPayload | undefined>;
    consume(id: string): Promise<void>;
    destroy(id: string): Promise<void>;
    revokeByGrantId(grantId: string): Promise<void>;
  }

  export interface Client {
    clientId: string;
    clientAuthMethod: string;
    grantTypeAllowed(grantType: string): boolean;
  }

  export interface BaseToken {
    jti: string;
    kind: string;
    iat?: number;
    exp?: number;
    iiat?: number;
    clientId?: string;
    grantId?: string;
    scope?: string;
    readonly scopes: Set<string>;
    resource?: string | string[];
    readonly isExpired: boolean;
    readonly remainingTTL: number;
  }

  export interface RefreshToken extends BaseToken {
    consumed?: number;
    rotations?: number;
  }

  export interface Interaction {
    uid: string;
    exp: number;
    returnTo: string;
    grantId?: string;
    params: Record<string, unknown>;
    prompt: { name: string; reasons: string[]; details: Record<string, unknown> };
    session?: { accountId: string; uid?: string };
    result?: unknown;
    save(ttl: number): Promise<string>;
  }

  export interface Grant {
    jti: string;
    accountId: string;
    clientId: string;
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: string[]): void;
    addResourceScope(resource: string, scope: string): void;
    save(): Promise<string>;
  }

  export interface ModelStatic<T> {
    find(id: string, options?: { ignoreExpiration?: boolean }): Promise<T | undefined>;
    readonly adapter: Adapter;
  }

  export interface ClientStatic {
    find(id: string): Promise<Client | undefined>;
    validate(metadata: Record<string, unknown>): Promise<void>;
    readonly adapter: Adapter;
  }

  export interface GrantStatic extends ModelStatic<Grant> {
    new (init: { accountId: string; clientId: string }): Grant;
  }

  /** Opaque to the bed: passed straight through to oidc-provider, which validates it. */
  export type Configuration = Record<string, unknown>;

  export class Provider {
    constructor(issuer: string, configuration?: Configuration);
    readonly issuer: string;
    proxy: boolean;
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    use(middleware: Middleware): this;
    on(event: string, listener: (...args: never[]) => void): this;
    pathFor(name: string, options?: Record<string, unknown>): string;
    readonly Client: ClientStatic;
    readonly Grant: GrantStatic;
    readonly Interaction: ModelStatic<Interaction>;
    readonly RefreshToken: ModelStatic<RefreshToken>;
  }

  export class OIDCProviderError extends Error {
    status: number;
    statusCode: number;
    expose: boolean;
    error: string;
    error_description?: string;
    error_detail?: string;
  }

  export const errors: {
    OIDCProviderError: typeof OIDCProviderError;
    InvalidTarget: new (description?: string) => OIDCProviderError;
    InvalidRequest: new (description?: string) => OIDCProviderError;
  };

  export default Provider;
}
