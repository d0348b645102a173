/** Credentials without a database: password policy and hashing, API key shapes, the OIDC verifier's failure modes, the sign-in limiter. */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { generateKeyPair, SignJWT } from 'jose';
import { isAppError } from '../kernel/index.ts';
import { RateLimiter } from './auth.service.ts';
import {
  createOidcVerifier,
  hashPassword,
  newApiKey,
  parseApiKey,
  passwordProblems,
  verifyPassword,
} from './credentials.ts';

describe('credentials', () => {
  it('hashes passwords with scrypt and verifies them; malformed hashes never verify', async () => {
    const hash = await hashPassword('Correct#Horse9');
    assert.match(hash, /^scrypt\$32768\$8\$1\$/);
    assert.equal(await verifyPassword('Correct#Horse9', hash), true);
    assert.equal(await verifyPassword('correct#horse9', hash), false);
    for (const bad of [
      '',
      'scrypt$1$2',
      'bcrypt$x$y$z$a$b',
      'scrypt$99999999$8$1$AA$AA',
      hash.replace('scrypt', 'SCRYPT'),
    ])
      assert.equal(await verifyPassword('Correct#Horse9', bad), false, bad);
    assert.equal(await verifyPassword('anything', null), false);
  });

  it('applies the password policy', () => {
    assert.deepEqual(passwordProblems('Str0ng!Passw0rd', { minLength: 10 }), []);
    assert.ok(passwordProblems('Ab1!', { minLength: 10 }).some((p) => p.startsWith('at least 10')));
    assert.ok(
      passwordProblems('abcdefghijkl', { minLength: 10 }).some((p) => p.startsWith('at least three')),
    );
    assert.ok(passwordProblems('Password123', { minLength: 8 }).some((p) => p.includes('commonly')));
    assert.ok(
      passwordProblems('Zhang#San2026', { minLength: 8, username: 'zhang' }).some((p) =>
        p.includes('username'),
      ),
    );
    assert.deepEqual(
      passwordProblems('浦江数字底座Ab1!', { minLength: 10 }),
      [],
      'Chinese characters count as characters',
    );
  });

  it('shapes API keys so that only the prefix and a digest are stored', () => {
    const k = newApiKey();
    assert.match(k.key, /^pj_[a-z2-9]{8}_[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(parseApiKey(k.key), { prefix: k.prefix, secretHash: k.secretHash });
    for (const bad of ['pj_', `pj_${k.prefix}`, `${k.key}x`, k.key.toUpperCase(), `pj_${k.prefix}_short`])
      assert.equal(parseApiKey(bad), null, bad);
  });

  it('counts sign-in attempts per address in fixed windows', () => {
    const limiter = new RateLimiter({ limit: 3, windowMs: 60_000 });
    const t0 = 1_000_000;
    assert.deepEqual(
      [1, 2, 3].map(() => limiter.hit('a', t0)),
      [0, 0, 0],
    );
    assert.equal(limiter.hit('a', t0 + 1_000), 59);
    assert.equal(limiter.hit('b', t0 + 1_000), 0, 'other addresses are not affected');
    assert.equal(limiter.hit('a', t0 + 60_000), 0, 'a new window');
  });

  it('answers 503 when the identity provider cannot be reached, and null for a bad token', async () => {
    // A port that refuses connections: bind, note it, close.
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const verifier = createOidcVerifier({
      issuer: 'https://idp.example',
      jwksUrl: `http://127.0.0.1:${port}/jwks`,
      audience: 'pujiang',
      usernameClaim: 'preferred_username',
    });
    const { privateKey } = await generateKeyPair('RS256');
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', kid: 'x' })
      .setIssuer('https://idp.example')
      .setAudience('pujiang')
      .setSubject('s')
      .setExpirationTime('5m')
      .sign(privateKey);
    await assert.rejects(verifier.verify(token), (e: unknown) => isAppError(e) && e.status === 503);
    assert.equal(await verifier.verify('not.a.token'), null);
  });
});
