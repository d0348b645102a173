/**
 * Credentials (身份认证的凭据): password hashing and policy, the platform's own JWT access tokens,
 * opaque refresh tokens, API keys, keyed hashes of resident IDs, and verification of an external
 * identity provider's tokens (OIDC, by JWKS). Pure functions over keys derived from the platform
 * secret; storage lives in the stores.
 */
import { createHash, createHmac, hkdfSync, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { createRemoteJWKSet, decodeJwt, errors, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { AppError } from '../kernel/index.ts';
import { TrustErrors } from './errors.ts';

// --- Passwords --------------------------------------------------------------------------------

/** scrypt cost: N=2^15, r=8, p=1 (about 50 ms and 32 MiB per hash on the reference machine). */
const SCRYPT = { N: 32_768, r: 8, p: 1, keylen: 32 } as const;

function scryptAsync(
  password: string,
  salt: Buffer,
  params: { N: number; r: number; p: number },
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(
      password.normalize('NFC'),
      salt,
      SCRYPT.keylen,
      { ...params, maxmem: 256 * params.N * params.r },
      (e, key) => (e ? reject(e) : resolve(key)),
    );
  });
}

/** Hashes a password as `scrypt$N$r$p$salt$hash` (base64url parts). */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

/** A well-formed hash of a random password: verified against when the user does not exist. */
const DUMMY_HASH = `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${Buffer.alloc(16).toString('base64url')}$${Buffer.alloc(32).toString('base64url')}`;

/**
 * True when `password` matches `stored`; never throws on a malformed stored value (false).
 * With `stored` null it still spends the same time, so timing does not tell which users exist.
 */
export async function verifyPassword(password: string, stored: string | null): Promise<boolean> {
  const parts = (stored ?? DUMMY_HASH).split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  if (![N, r, p].every((n) => Number.isInteger(n) && n > 0) || N > 1 << 20) return false;
  const salt = Buffer.from(parts[4] ?? '', 'base64url');
  const expected = Buffer.from(parts[5] ?? '', 'base64url');
  const actual = await scryptAsync(password, salt, { N, r, p });
  return stored !== null && expected.length === actual.length && timingSafeEqual(expected, actual);
}

const COMMON_PASSWORDS = new Set([
  'password',
  'password1',
  'password123',
  '123456789',
  '1234567890',
  'qwertyuiop',
  'abc123456',
  'iloveyou',
  'admin123',
  'admin@123',
  'woaini1314',
  'a123456789',
  'qwerty123',
  'p@ssw0rd',
  'passw0rd',
  'shanghai123',
]);

/** Problems with a new password under the policy (empty when acceptable). */
export function passwordProblems(
  password: string,
  options: { minLength: number; username?: string },
): string[] {
  const problems: string[] = [];
  if (Array.from(password).length < options.minLength)
    problems.push(`at least ${options.minLength} characters`);
  if (Array.from(password).length > 256) problems.push('at most 256 characters');
  const classes = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((re) => re.test(password)).length;
  if (classes < 3) problems.push('at least three of: lower-case, upper-case, digits, symbols');
  if (COMMON_PASSWORDS.has(password.toLowerCase())) problems.push('not a commonly used password');
  if (options.username && password.toLowerCase().includes(options.username.toLowerCase()))
    problems.push('must not contain the username');
  return problems;
}

// --- Keys derived from the platform secret ----------------------------------------------------

export interface TrustKeys {
  /** HMAC key for the platform's access tokens (HS256). */
  accessToken: Uint8Array;
  /** Key for the keyed hash (salt) of resident IDs. */
  residentId: Buffer;
}

/** Derives independent keys from the platform secret (HKDF-SHA-256, one label per use). */
export function deriveKeys(secret: string): TrustKeys {
  const derive = (label: string) => Buffer.from(hkdfSync('sha256', secret, 'pujiang', label, 32));
  return { accessToken: new Uint8Array(derive('access-token')), residentId: derive('resident-id') };
}

/** The keyed hash stored instead of a resident ID: same ID, same hash; unreadable without the secret. */
export function residentIdHash(keys: TrustKeys, residentId: string): string {
  return createHmac('sha256', keys.residentId).update(residentId.toUpperCase()).digest('hex');
}

export const sha256Hex = (s: string): string => createHash('sha256').update(s).digest('hex');

// --- Access tokens ----------------------------------------------------------------------------

const ISSUER = 'pujiang';
const AUDIENCE = 'pujiang-api';

/** Signs a short-lived access token for a user (HS256). */
export async function issueAccessToken(
  keys: TrustKeys,
  args: { userId: string; tokenVersion: number; ttlSeconds: number },
): Promise<string> {
  return new SignJWT({ ver: args.tokenVersion })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(args.userId)
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setJti(randomBytes(12).toString('base64url'))
    .setExpirationTime(`${args.ttlSeconds}s`)
    .sign(keys.accessToken);
}

/** Verifies one of our access tokens (HS256 only: `alg: none` and others are refused); null when invalid. */
export async function verifyAccessToken(
  keys: TrustKeys,
  token: string,
): Promise<{ userId: string; tokenVersion: number } | null> {
  try {
    const { payload } = await jwtVerify(token, keys.accessToken, {
      algorithms: ['HS256'],
      issuer: ISSUER,
      audience: AUDIENCE,
      requiredClaims: ['sub', 'exp', 'iat'],
    });
    const ver = payload['ver'];
    if (typeof payload.sub !== 'string' || typeof ver !== 'number') return null;
    return { userId: payload.sub, tokenVersion: ver };
  } catch {
    return null;
  }
}

/** The `iss` claim of a JWT, unverified (to route it to the right verifier), or null. */
export function tokenIssuer(token: string): string | null {
  try {
    return decodeJwt(token).iss ?? null;
  } catch {
    return null;
  }
}

export const isOwnIssuer = (iss: string | null): boolean => iss === ISSUER;

// --- Refresh tokens and API keys --------------------------------------------------------------

/** A new opaque refresh token and the hash stored for it. */
export function newRefreshToken(): { token: string; hash: string } {
  const token = `pjr_${randomBytes(32).toString('base64url')}`;
  return { token, hash: sha256Hex(token) };
}

const KEY_ALPHABET = 'abcdefghijkmnopqrstuvwxyz23456789';
const API_KEY = /^pj_([a-z0-9]{8})_([A-Za-z0-9_-]{43})$/;

/** A new API key `pj_<prefix>_<secret>`: the prefix finds it, the secret's SHA-256 checks it. */
export function newApiKey(): { key: string; prefix: string; secretHash: string } {
  const prefix = [...randomBytes(8)].map((b) => KEY_ALPHABET[b % KEY_ALPHABET.length]).join('');
  const secret = randomBytes(32).toString('base64url');
  return { key: `pj_${prefix}_${secret}`, prefix, secretHash: sha256Hex(secret) };
}

/** Splits a presented API key; null when it is not shaped like one. */
export function parseApiKey(key: string): { prefix: string; secretHash: string } | null {
  const m = API_KEY.exec(key);
  if (!m?.[1] || !m[2]) return null;
  return { prefix: m[1], secretHash: sha256Hex(m[2]) };
}

/** Constant-time comparison of two hex digests. */
export function sameDigest(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

// --- External identity provider (OIDC) --------------------------------------------------------

export interface OidcVerifier {
  issuer: string;
  /**
   * Verifies a token from the provider; resolves to its subject and username claim, or null when
   * the token is bad. Throws `identity-provider-unavailable` (503) when the JWKS cannot be fetched.
   */
  verify(token: string): Promise<{ subject: string; username: string | null } | null>;
}

/** A verifier for the provider's tokens by its JWKS (keys cached, refetched on an unknown `kid`). */
export function createOidcVerifier(args: {
  issuer: string;
  jwksUrl: string;
  audience: string;
  usernameClaim: string;
}): OidcVerifier {
  const jwks = createRemoteJWKSet(new URL(args.jwksUrl), {
    timeoutDuration: 5_000,
    cooldownDuration: 30_000,
  });
  return {
    issuer: args.issuer,
    async verify(token) {
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, jwks, {
          issuer: args.issuer,
          audience: args.audience,
          algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA'],
          requiredClaims: ['sub', 'exp'],
        }));
      } catch (e) {
        // A token that fails to verify is the caller's problem; a provider we cannot reach is not.
        const unreachable =
          !(e instanceof errors.JOSEError) ||
          e instanceof errors.JWKSTimeout ||
          e instanceof errors.JWKSInvalid;
        if (unreachable)
          throw new AppError(TrustErrors['identity-provider-unavailable'], { retryAfter: 30, cause: e });
        return null;
      }
      const username = payload[args.usernameClaim];
      return {
        subject: `${args.issuer}#${payload.sub ?? ''}`,
        username: typeof username === 'string' ? username : null,
      };
    },
  };
}
