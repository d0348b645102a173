/** Starts a whole platform in-process over a test database, for HTTP tests with `inject`. */
import { loadConfig, silentLogger } from '../../src/kernel/index.ts';
import { startPlatform, type Platform, type StartOptions } from '../../src/platform.ts';
import { DEMO_PASSWORD } from '../../src/trust/index.ts';
import type { TestDatabase } from './engines.ts';

export async function startTestPlatform(
  t: TestDatabase,
  options: { env?: Record<string, string>; listen?: boolean } & Pick<StartOptions, 'modules'> = {},
): Promise<Platform> {
  const config = loadConfig({
    env: { LOG_LEVEL: 'silent', PORT: '0', ...(t.url ? { DATABASE_URL: t.url } : {}), ...options.env },
  });
  return startPlatform({
    config,
    logger: silentLogger(),
    database: t.database,
    listen: options.listen ?? false,
    ...(options.modules ? { modules: options.modules } : {}),
  });
}

/** Signs a demo user in (password `DEMO_PASSWORD`) and returns its Authorization header; tokens are cached per platform. */
export async function signIn(platform: Platform, username: string): Promise<{ authorization: string }> {
  let byUser = tokens.get(platform);
  if (!byUser) tokens.set(platform, (byUser = new Map<string, string>()));
  let token = byUser.get(username);
  if (!token) {
    const res = await platform.http.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { username, password: DEMO_PASSWORD },
    });
    if (res.statusCode !== 200)
      throw new Error(`sign-in of ${username} failed: ${res.statusCode} ${res.body}`);
    token = res.json<{ accessToken: string }>().accessToken;
    byUser.set(username, token);
  }
  return { authorization: `Bearer ${token}` };
}

const tokens = new WeakMap<Platform, Map<string, string>>();
