/** Starts a whole platform in-process over a test database, for HTTP tests with `inject`. */
import { loadConfig, silentLogger } from '../../src/kernel/index.ts';
import { startPlatform, type Platform, type StartOptions } from '../../src/platform.ts';
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
