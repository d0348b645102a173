/**
 * The `pujiang` command line: `start`, `migrate`, `openapi`, `config`. The one place that reads
 * the process environment (through `readProcessEnv`) and turns flags into config overrides.
 */
import { readFileSync, writeFileSync } from 'node:fs';
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
  type Database,
} from './kernel/index.ts';
import { migrationSources, startPlatform, VERSION } from './platform.ts';
import {
  bootstrapAdmin,
  checkpointAll,
  createTrustRuntime,
  loadSigner,
  parsePublicKey,
  rotateSigningKey,
  seedShanghaiAreas,
  syncSystemRoles,
  verifyAuditTrail,
  verifyProofDocument,
} from './trust/index.ts';

const HELP = `pujiang ${VERSION} — 浦江 city digital foundation

Usage: pujiang <command> [options]

Commands:
  start              run the platform (HTTP API, console, event relay)
  migrate            apply pending database migrations and exit
  openapi [--out F]  print (or write to F) the OpenAPI 3.1 document
  config             print the effective configuration (secrets hidden)
  areas load         load Shanghai's districts, streets and generated grids (production set-up)
  admin create --username U --display-name N
                     create a platform administrator; the password is read from
                     PUJIANG_ADMIN_PASSWORD or the first line of standard input
  audit verify [--public-key F]
                     recompute the audit chain and every signed checkpoint; names the first
                     bad record (exit 1). --public-key pins the key instead of the key table
  audit checkpoint   sign a checkpoint over pending audit records now
  audit rotate-key   make a new signing key (AUDIT_KEY_FILE); old keys stay published
  audit verify-proof <proof.json|-> --public-key F
                     check an inclusion proof offline with the public key alone (PEM or JWK)
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

function parse(): {
  command: string;
  args: string[];
  values: Record<string, string | boolean | undefined>;
} {
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
        'public-key': { type: 'string' },
        username: { type: 'string' },
        'display-name': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
    const command = values.help ? 'help' : values.version ? 'version' : (positionals[0] ?? 'help');
    const args = positionals.slice(1);
    const arity: Record<string, number> = { audit: 2, admin: 1, areas: 1 };
    if (args.length > (arity[command] ?? 0))
      fail(`unexpected argument "${args[arity[command] ?? 0] ?? ''}"; see pujiang --help`, 2);
    return { command, args, values };
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

/** Opens and migrates the configured database, runs `fn`, closes it. */
async function withDatabase<T>(config: Config, fn: (database: Database) => Promise<T>): Promise<T> {
  const logger = createLogger({ ...config, logLevel: config.logLevel === 'info' ? 'warn' : config.logLevel });
  const database = await openDatabase({ ...config, logger }).catch((e: unknown) =>
    fail((e as Error).message),
  );
  try {
    await migrate({ database, sources: migrationSources(), logger });
    return await fn(database);
  } finally {
    await database.close();
  }
}

async function readSecretLine(envValue: string | undefined): Promise<string> {
  if (envValue !== undefined) return envValue;
  if (process.stdin.isTTY) process.stderr.write('password: ');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return (Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '').trim();
}

function readPublicKey(path: string | boolean | undefined) {
  if (typeof path !== 'string') return fail('--public-key <file> is required (PEM or JWK)', 2);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    return fail(`cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    return parsePublicKey(text.trim().startsWith('{') ? (JSON.parse(text) as object) : text);
  } catch (e) {
    return fail(`${path}: ${(e as Error).message}`);
  }
}

async function audit(
  sub: string | undefined,
  args: string[],
  values: Record<string, string | boolean | undefined>,
) {
  if (sub === 'verify-proof') {
    const file = args[0];
    if (file === undefined) fail('audit verify-proof needs a proof file (or - for standard input)', 2);
    const key = readPublicKey(values['public-key']);
    let doc: unknown;
    try {
      doc = JSON.parse(file === '-' ? await readSecretLine(undefined) : readFileSync(file, 'utf8'));
    } catch (e) {
      fail(`cannot read the proof: ${(e as Error).message}`);
    }
    const result = verifyProofDocument(doc, key);
    if (!result.ok) fail(`proof does NOT verify: ${result.reason}`);
    console.log(`proof verifies: record ${result.seq} is in signed checkpoint ${result.checkpoint}`);
    return;
  }
  const config = configFrom(values);
  switch (sub) {
    case 'verify': {
      const trustedKeys =
        values['public-key'] === undefined ? undefined : [readPublicKey(values['public-key'])];
      const report = await withDatabase(config, (database) =>
        verifyAuditTrail(database, { ...(trustedKeys && { trustedKeys }) }),
      );
      if (!report.ok)
        fail(
          `audit trail BROKEN: ${report.problem?.reason ?? 'unknown problem'} (${report.records} records verified before it)`,
        );
      console.log(
        `audit trail OK: ${report.records} records chained, ${report.checkpoints} signed checkpoints, sealed through record ${report.sealedThrough}`,
      );
      return;
    }
    case 'checkpoint': {
      const made = await withDatabase(config, async (database) =>
        checkpointAll(database, loadSigner(config.auditKeyFile)),
      );
      const last = made[made.length - 1];
      console.log(
        last
          ? `signed ${made.length} checkpoint(s), the last over records ${last.statement.fromSeq}..${last.statement.toSeq} (key ${last.statement.keyId})`
          : 'nothing to checkpoint: every record is already covered',
      );
      return;
    }
    case 'rotate-key': {
      const path = config.auditKeyFile;
      if (path === undefined)
        fail('audit rotate-key needs a key file (AUDIT_KEY_FILE, or a DATA_DIR store)', 2);
      const signer = await withDatabase(config, (database) => rotateSigningKey(database, path));
      console.log(`new signing key ${signer.keyId} written to ${path}; restart running nodes to use it`);
      return;
    }
    default:
      fail(`unknown audit command "${sub ?? ''}"; see pujiang --help`, 2);
  }
}

async function main(): Promise<void> {
  const { command, args, values } = parse();
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
    case 'audit':
      await audit(args[0], args.slice(1), values);
      return;
    case 'areas': {
      if (args[0] !== 'load') fail(`unknown areas command "${args[0] ?? ''}"; see pujiang --help`, 2);
      const config = configFrom(values);
      const n = await withDatabase(config, (database) =>
        seedShanghaiAreas(database, { logger: createLogger(config) }),
      );
      console.log(n > 0 ? `loaded ${n} areas` : 'areas already loaded; nothing changed');
      return;
    }
    case 'admin': {
      if (args[0] !== 'create') fail(`unknown admin command "${args[0] ?? ''}"; see pujiang --help`, 2);
      const username = values['username'];
      if (typeof username !== 'string') fail('admin create needs --username', 2);
      const config = configFrom(values);
      const password = await readSecretLine(readProcessEnv()['PUJIANG_ADMIN_PASSWORD']);
      const user = await withDatabase(config, async (database) => {
        await syncSystemRoles(database);
        return bootstrapAdmin(createTrustRuntime(config, database), {
          username,
          displayName: typeof values['display-name'] === 'string' ? values['display-name'] : username,
          password,
        });
      }).catch((e: unknown) => fail((e as Error).message));
      console.log(`created platform administrator ${user.username} (${user.id})`);
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
