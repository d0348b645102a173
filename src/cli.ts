/**
 * The `pujiang` command line: `start`, `migrate`, `openapi`, `config`. The one place that reads
 * the process environment (through `readProcessEnv`) and turns flags into config overrides.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  ConfigError,
  createLogger,
  loadConfig,
  migrate,
  openDatabase,
  readProcessEnv,
  redact,
  silentLogger,
  type Config,
} from './kernel/index.ts';
import { migrationSources, startPlatform, VERSION } from './platform.ts';

const HELP = `pujiang ${VERSION} — 浦江 city digital foundation

Usage: pujiang <command> [options]

Commands:
  start              run the platform (HTTP API, console, event relay)
  migrate            apply pending database migrations and exit
  openapi [--out F]  print (or write to F) the OpenAPI 3.1 document
  config             print the effective configuration (secrets hidden)
  help               show this help

Options:
  --memory           throw-away embedded store (PUJIANG_MEMORY=true)
  --port <n>         HTTP port (PORT)
  --host <addr>      HTTP bind address (HOST)
  --data-dir <dir>   embedded store directory (DATA_DIR)
  --config <file>    JSON config file (PUJIANG_CONFIG)
  --production       production mode (PUJIANG_MODE=production)

Configuration is read from environment variables; see README.md for the full table.`;

function fail(message: string, code = 1): never {
  process.stderr.write(`pujiang: ${message}\n`);
  process.exit(code);
}

function parse(): { command: string; values: Record<string, string | boolean | undefined> } {
  try {
    const { values, positionals } = parseArgs({
      allowPositionals: true,
      options: {
        memory: { type: 'boolean' },
        port: { type: 'string' },
        host: { type: 'string' },
        'data-dir': { type: 'string' },
        config: { type: 'string' },
        production: { type: 'boolean' },
        out: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
    const command = values.help ? 'help' : values.version ? 'version' : (positionals[0] ?? 'help');
    if (positionals.length > 1) fail(`unexpected argument "${positionals[1]}"; see pujiang --help`, 2);
    return { command, values };
  } catch (e) {
    return fail(`${(e as Error).message}; see pujiang --help`, 2);
  }
}

function configFrom(values: Record<string, string | boolean | undefined>): Config {
  const overrides: Record<string, string> = {};
  if (values['memory']) overrides['PUJIANG_MEMORY'] = 'true';
  if (typeof values['port'] === 'string') overrides['PORT'] = values['port'];
  if (typeof values['host'] === 'string') overrides['HOST'] = values['host'];
  if (typeof values['data-dir'] === 'string') overrides['DATA_DIR'] = values['data-dir'];
  if (typeof values['config'] === 'string') overrides['PUJIANG_CONFIG'] = values['config'];
  if (values['production']) overrides['PUJIANG_MODE'] = 'production';
  try {
    return loadConfig({ env: readProcessEnv(), overrides, cwd: process.cwd(), isTTY: process.stdout.isTTY });
  } catch (e) {
    if (e instanceof ConfigError) fail(e.message, 78);
    throw e;
  }
}

async function start(config: Config): Promise<void> {
  const logger = createLogger(config);
  let platform;
  try {
    platform = await startPlatform({ config, logger });
  } catch (e) {
    logger.fatal({ err: (e as Error).message }, 'Pujiang could not start');
    logger.flush();
    await new Promise((r) => setTimeout(r, 100));
    fail((e as Error).message);
  }
  let signals = 0;
  const shutdown = (signal: string) => {
    signals++;
    if (signals > 1) fail(`second ${signal}; exiting without finishing shutdown`, 130);
    logger.info({ signal }, 'shutting down: draining requests and relaying the outbox');
    const force = setTimeout(
      () => fail(`shutdown took longer than ${config.shutdownGraceMs} ms`),
      config.shutdownGraceMs,
    );
    force.unref();
    platform.stop().then(
      () => {
        logger.info('stopped');
        logger.flush();
        process.exit(0);
      },
      (e: unknown) => fail(`shutdown failed: ${(e as Error).message}`),
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

async function main(): Promise<void> {
  const { command, values } = parse();
  switch (command) {
    case 'help':
      console.log(HELP);
      return;
    case 'version':
      console.log(VERSION);
      return;
    case 'start':
      await start(configFrom(values));
      return;
    case 'migrate': {
      const config = configFrom(values);
      const logger = createLogger(config);
      const database = await openDatabase({ ...config, logger }).catch((e: unknown) =>
        fail((e as Error).message),
      );
      try {
        const report = await migrate({ database, sources: migrationSources(), logger });
        console.log(
          `applied ${report.applied.length} migration(s); ${report.alreadyApplied} already applied`,
        );
        for (const m of report.applied) console.log(`  + ${m}`);
      } catch (e) {
        fail((e as Error).message);
      } finally {
        await database.close();
      }
      return;
    }
    case 'openapi': {
      const doc = await openApiDocument();
      if (typeof values['out'] === 'string') writeFileSync(values['out'], doc);
      else process.stdout.write(doc);
      return;
    }
    case 'config': {
      const config = configFrom(values);
      const shown = {
        ...config,
        secret: '[hidden]',
        databaseUrl: config.databaseUrl ? redact(config.databaseUrl) : undefined,
        natsUrl: config.natsUrl ? config.natsUrl.split(',').map(redact).join(',') : undefined,
        mqttUrl: config.mqttUrl ? redact(config.mqttUrl) : undefined,
      };
      console.log(JSON.stringify(shown, null, 2));
      return;
    }
    default:
      fail(`unknown command "${command}"; see pujiang --help`, 2);
  }
}

/** The OpenAPI document as generated from the route schemas (embedded, throw-away store). */
export async function openApiDocument(): Promise<string> {
  const config = loadConfig({ env: {}, overrides: { PUJIANG_MEMORY: 'true', LOG_LEVEL: 'silent' } });
  const platform = await startPlatform({ config, logger: silentLogger(), listen: false, relay: false });
  try {
    return `${JSON.stringify(platform.http.swagger(), null, 2)}\n`;
  } finally {
    await platform.stop();
  }
}

await main();
