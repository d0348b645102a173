/**
 * Authentication (身份认证): who is calling. Password sign-in with rate limiting and lockout,
 * short-lived access tokens with rotating refresh tokens, API keys for machines, and tokens of an
 * external identity provider (OIDC). Each request's credential resolves to an `Actor` with its
 * grants, read fresh from the database (a disabled user or a revoked key stops at once).
 */
import { randomUUID } from 'node:crypto';
import { AppError, Errors, type Config, type Database } from '../kernel/index.ts';
import { recordAudit } from './audit.service.ts';
import { ANONYMOUS, type Actor, type CallContext, type Grant } from './authz.ts';
import {
  isOwnIssuer,
  issueAccessToken,
  newRefreshToken,
  parseApiKey,
  sameDigest,
  sha256Hex,
  tokenIssuer,
  verifyAccessToken,
  verifyPassword,
  type OidcVerifier,
  type TrustKeys,
} from './credentials.ts';
import {
  findApiKeyByPrefix,
  findUser,
  findUserByExternalSubject,
  findUserByUsername,
  insertRefreshToken,
  markRefreshUsed,
  membershipsOf,
  recordLoginFailure,
  recordLoginSuccess,
  revokeRefreshFamily,
  takeRefreshToken,
  touchApiKey,
  type UserRow,
} from './identity.store.ts';
import { TrustErrors } from './errors.ts';

/** What the trust services share: storage, settings, keys and the per-node sign-in limiter. */
export interface TrustRuntime {
  database: Database;
  config: Config;
  keys: TrustKeys;
  oidc: OidcVerifier | undefined;
  limiter: RateLimiter;
}

/** A fixed-window counter per key (client address), held in memory on each node. */
export class RateLimiter {
  readonly #windows = new Map<string, { start: number; count: number }>();
  readonly #limit: number;
  readonly #windowMs: number;
  constructor(options: { limit: number; windowMs: number }) {
    this.#limit = options.limit;
    this.#windowMs = options.windowMs;
  }
  /** Counts one attempt; resolves to the seconds to wait when over the limit, else 0. */
  hit(key: string, now = Date.now()): number {
    if (this.#windows.size > 100_000)
      for (const [k, w] of this.#windows) if (now - w.start >= this.#windowMs) this.#windows.delete(k);
    const w = this.#windows.get(key);
    if (!w || now - w.start >= this.#windowMs) {
      this.#windows.set(key, { start: now, count: 1 });
      return 0;
    }
    w.count += 1;
    return w.count > this.#limit ? Math.ceil((w.start + this.#windowMs - now) / 1000) : 0;
  }
}

/** The grants of a user: one per membership in an active organisation. */
export async function actorForUser(database: Database, user: UserRow): Promise<Actor> {
  const memberships = (await membershipsOf(database.db, user.id)).filter((m) => m.org_status === 'active');
  const grants: Grant[] = memberships.map((m) => ({
    orgId: m.org_id,
    orgCode: m.org_code,
    role: m.role_code,
    permissions: new Set(m.permissions),
    scope: m.area_path,
  }));
  return {
    kind: 'user',
    id: user.id,
    name: user.username,
    userId: user.id,
    org: memberships[0]?.org_code ?? null,
    grants,
  };
}

const unauthorized = (detail: string) => new AppError(Errors.unauthorized, { detail });

/**
 * Resolves the caller from the request's credential: `Authorization: Bearer <access token | API
 * key | external token>` or `X-API-Key`. No credential is the anonymous actor; a bad one is 401.
 */
export async function authenticate(
  rt: TrustRuntime,
  headers: { authorization?: string | undefined; apiKey?: string | undefined },
): Promise<Actor> {
  let credential = headers.apiKey;
  if (headers.authorization !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(headers.authorization);
    if (!m?.[1]) throw unauthorized('Expected "Authorization: Bearer <token>"');
    credential = m[1];
  }
  if (credential === undefined) return ANONYMOUS;
  if (credential.startsWith('pj_')) return actorForApiKey(rt, credential);
  const issuer = tokenIssuer(credential);
  if (isOwnIssuer(issuer)) {
    const claims = await verifyAccessToken(rt.keys, credential);
    if (!claims) throw unauthorized('The access token is invalid or expired');
    const user = await findUser(rt.database.db, claims.userId);
    if (!user || user.status !== 'active' || user.token_version !== claims.tokenVersion)
      throw unauthorized('The access token is no longer valid');
    return actorForUser(rt.database, user);
  }
  if (rt.oidc && issuer === rt.oidc.issuer) {
    const external = await rt.oidc.verify(credential);
    if (!external) throw unauthorized('The identity provider token is invalid or expired');
    const user =
      (await findUserByExternalSubject(rt.database.db, external.subject)) ??
      (external.username ? await findLinkableUser(rt.database, external.username) : undefined);
    if (!user || user.status !== 'active')
      throw unauthorized('No active Pujiang account is linked to this identity');
    return actorForUser(rt.database, user);
  }
  throw unauthorized('The token is not one this platform accepts');
}

/** An account may be matched by username only while it has no external subject of its own. */
async function findLinkableUser(database: Database, username: string): Promise<UserRow | undefined> {
  const user = await findUserByUsername(database.db, username.toLowerCase());
  return user && user.external_subject === null ? user : undefined;
}

async function actorForApiKey(rt: TrustRuntime, key: string): Promise<Actor> {
  const parsed = parseApiKey(key);
  if (!parsed) throw unauthorized('Malformed API key');
  const row = await findApiKeyByPrefix(rt.database.db, parsed.prefix);
  if (!row || !sameDigest(row.secret_hash, parsed.secretHash)) throw unauthorized('Unknown API key');
  if (row.revoked_at) throw unauthorized('The API key was revoked');
  if (row.expires_at && row.expires_at.getTime() <= Date.now()) throw unauthorized('The API key has expired');
  if (row.org_status !== 'active') throw unauthorized("The API key's organisation is disabled");
  await touchApiKey(rt.database.db, row.id);
  return {
    kind: 'api-key',
    id: row.id,
    name: row.name,
    userId: null,
    org: row.org_code,
    grants: [
      {
        orgId: row.org_id,
        orgCode: row.org_code,
        role: null,
        permissions: new Set(row.permissions),
        scope: row.area_path,
      },
    ],
  };
}

export interface TokenPair {
  accessToken: string;
  tokenType: 'Bearer';
  expiresIn: number;
  refreshToken: string;
  refreshExpiresIn: number;
}

async function issuePair(
  rt: TrustRuntime,
  trx: Parameters<Parameters<Database['transact']>[0]>[0],
  user: UserRow,
  familyId: string,
): Promise<TokenPair> {
  const refresh = newRefreshToken();
  await insertRefreshToken(trx, {
    id: randomUUID(),
    familyId,
    userId: user.id,
    hash: refresh.hash,
    ttlSeconds: rt.config.refreshTokenTtlSeconds,
  });
  return {
    accessToken: await issueAccessToken(rt.keys, {
      userId: user.id,
      tokenVersion: user.token_version,
      ttlSeconds: rt.config.accessTokenTtlSeconds,
    }),
    tokenType: 'Bearer',
    expiresIn: rt.config.accessTokenTtlSeconds,
    refreshToken: refresh.token,
    refreshExpiresIn: rt.config.refreshTokenTtlSeconds,
  };
}

const badCredentials = () => new AppError(TrustErrors['invalid-credentials']);

/**
 * Password sign-in. Refuses with one message for unknown user and wrong password (no
 * enumeration), 429 past the per-address rate, 423 while the account is locked.
 */
export async function login(
  rt: TrustRuntime,
  ctx: CallContext & { clientAddress: string },
  input: { username: string; password: string },
): Promise<TokenPair> {
  const wait = rt.limiter.hit(ctx.clientAddress);
  if (wait > 0)
    throw new AppError(Errors['too-many-requests'], {
      detail: 'Too many sign-in attempts',
      retryAfter: wait,
    });
  const username = input.username.trim().toLowerCase();
  const user = await findUserByUsername(rt.database.db, username);
  const attempt = {
    action: 'auth.login',
    resourceType: 'user',
    resourceId: user?.id ?? null,
    area: user?.area_code ?? null,
  };
  const refuse = async (reason: string) => {
    await rt.database.transact((trx) =>
      recordAudit(trx, ctx, {
        ...attempt,
        outcome: 'denied',
        details: { username: username.slice(0, 64), reason },
      }),
    );
  };
  if (user?.locked_until && user.locked_until.getTime() > Date.now()) {
    await refuse('locked');
    throw new AppError(TrustErrors['account-locked'], {
      retryAfter: Math.ceil((user.locked_until.getTime() - Date.now()) / 1000),
    });
  }
  const ok = await verifyPassword(input.password, user?.password_hash ?? null);
  if (!user || !ok) {
    if (user)
      await rt.database.transact(async (trx) => {
        const state = await recordLoginFailure(trx, user.id, {
          maxFailures: rt.config.loginMaxFailures,
          lockSeconds: rt.config.loginLockoutSeconds,
        });
        await recordAudit(trx, ctx, {
          ...attempt,
          outcome: 'denied',
          details: {
            username,
            reason: 'bad-password',
            failures: state.failed_logins,
            locked: state.locked_until !== null,
          },
        });
      });
    else await refuse('unknown-user');
    throw badCredentials();
  }
  if (user.status !== 'active') {
    await refuse('disabled');
    throw badCredentials();
  }
  return rt.database.transact(async (trx) => {
    await recordLoginSuccess(trx, user.id);
    const pair = await issuePair(rt, trx, user, randomUUID());
    await recordAudit(
      trx,
      { ...ctx, actor: { ...ANONYMOUS, kind: 'user', id: user.id, name: user.username } },
      {
        ...attempt,
        details: { username },
      },
    );
    return pair;
  });
}

/**
 * Exchanges a refresh token for a new pair (the old one is spent). Presenting a spent token
 * again means it was copied: the whole family is revoked and both holders must sign in again.
 */
export async function refresh(rt: TrustRuntime, ctx: CallContext, refreshToken: string): Promise<TokenPair> {
  const hash = sha256Hex(refreshToken);
  type Outcome = { pair: TokenPair } | { error: 'invalid' | 'reused' };
  const outcome = await rt.database.transact(async (trx): Promise<Outcome> => {
    const row = await takeRefreshToken(trx, hash);
    if (!row || row.revoked_at || row.expires_at.getTime() <= Date.now())
      return { error: 'invalid' as const };
    if (row.used_at) {
      await revokeRefreshFamily(trx, row.family_id);
      await recordAudit(trx, ctx, {
        action: 'auth.refresh',
        resourceType: 'user',
        resourceId: row.user_id,
        outcome: 'denied',
        details: { reason: 'refresh-token-reuse', family: row.family_id },
      });
      return { error: 'reused' as const };
    }
    const user = await findUser(trx, row.user_id);
    if (!user || user.status !== 'active') return { error: 'invalid' as const };
    await markRefreshUsed(trx, row.id);
    return { pair: await issuePair(rt, trx, user, row.family_id) };
  });
  if ('pair' in outcome) return outcome.pair;
  throw unauthorized(
    outcome.error === 'reused'
      ? 'The refresh token was already used; every session of this sign-in is revoked'
      : 'The refresh token is invalid or expired',
  );
}

/** Revokes the sign-in a refresh token belongs to (idempotent; unknown tokens are ignored). */
export async function logout(rt: TrustRuntime, ctx: CallContext, refreshToken: string): Promise<void> {
  await rt.database.transact(async (trx) => {
    const row = await takeRefreshToken(trx, sha256Hex(refreshToken));
    if (!row) return;
    await revokeRefreshFamily(trx, row.family_id);
    await recordAudit(trx, ctx, { action: 'auth.logout', resourceType: 'user', resourceId: row.user_id });
  });
}
