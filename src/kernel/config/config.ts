/**
 * Configuration, parsed once into a typed object. This is the only file that reads
 * `process.env` (the composition root passes it in); every problem is collected and reported
 * together, naming the variable and what it expects, so an operator fixes them in one go.
 *
 * Sources, highest precedence first: command-line overrides, environment variables, the optional
 * JSON config file (`PUJIANG_CONFIG` / `--config`, keys are the variable names), defaults.
 */
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export type Mode = 'demo' | 'production';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  mode: Mode;
  host: string;
  port: number;
  /** Embedded PGlite data directory; ignored when `databaseUrl` or `memory` is set. */
  dataDir: string;
  /** Throw-away embedded store held in memory. */
  memory: boolean;
  databaseUrl: string | undefined;
  databasePoolMax: number;
  /** Upper bound for a single SQL statement on PostgreSQL (ms). */
  statementTimeoutMs: number;
  natsUrl: string | undefined;
  natsStream: string;
  /** How long start-up waits for NATS before giving up (ms). */
  natsConnectTimeoutMs: number;
  mqttUrl: string | undefined;
  logLevel: LogLevel;
  logFormat: 'json' | 'pretty';
  /** Platform secret for signing tokens; a development default exists only in demo mode. */
  secret: string;
  corsOrigins: string[] | '*';
  bodyLimitBytes: number;
  /** Time for a request to arrive and be handled before it is answered 408/503 (ms). */
  requestTimeoutMs: number;
  /** How long graceful shutdown waits for in-flight work (ms). */
  shutdownGraceMs: number;
  outboxPollMs: number;
  outboxBatchSize: number;
  /** How long relayed outbox rows are kept for inspection (hours). */
  outboxRetentionHours: number;
  /** Ed25519 key signing audit checkpoints; undefined with a throw-away store (key kept in memory). */
  auditKeyFile: string | undefined;
  /** Longest time records wait for a signed checkpoint (ms). */
  auditCheckpointIntervalMs: number;
  /** Sign a checkpoint early once this many records are waiting. */
  auditCheckpointPending: number;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  passwordMinLength: number;
  /** Consecutive failed sign-ins before an account locks. */
  loginMaxFailures: number;
  loginLockoutSeconds: number;
  /** Sign-in attempts allowed per client address per minute (per node). */
  loginRatePerMinute: number;
  /** External identity provider (OIDC): all three set, or none. */
  oidc: { issuer: string; jwksUrl: string; audience: string; usernameClaim: string } | undefined;
  /** Which proxies' X-Forwarded-For to believe (client addresses for sign-in limits and logs). */
  trustProxy: boolean | string;
  /** NGSI-LD API access: `open` (no credentials, as FIWARE brokers run) or `secured` (by jurisdiction). */
  twinAccess: 'open' | 'secured';
  /** Time allowed to fetch a user JSON-LD @context before LdContextNotAvailable (ms). */
  twinContextTimeoutMs: number;
  /** Largest user @context document fetched (bytes). */
  twinContextMaxBytes: number;
  /** Largest NGSI-LD batch operation (entities). */
  twinMaxBatch: number;
  /**
   * Whether NGSI-LD notifications may go to loopback, private, link-local or other non-public
   * addresses (SSRF guard: refused when false; the address is checked after name resolution).
   */
  twinNotifyPrivate: boolean;
  /** Time a notification receiver has to answer (ms). */
  twinNotifyTimeoutMs: number;
  /** Delivery attempts of one notification before it is recorded as failed. */
  twinNotifyMaxAttempts: number;
  /** Notifications sent at once by one node. */
  twinNotifyConcurrency: number;
  /** How often each node looks for SLA timers that fell due (ms). */
  workflowTimerIntervalMs: number;
  /** Directory of case photos and attachments, stored by content hash; a temporary one with a throw-away store. */
  mediaDir: string;
  /** Largest photo or attachment accepted (bytes). */
  mediaMaxBytes: number;
  /** Timeout of a case webhook delivery (ms). */
  opsWebhookTimeoutMs: number;
  /** Where the config came from, for `pujiang config` and start-up logs. */
  configFile: string | undefined;
}

/** Thrown with every problem found; `problems` lists one line per variable. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** The development secret; production mode refuses to start with it. */
export const DEMO_SECRET = 'pujiang-demo-secret-do-not-use-in-production-0000';

type Source = Record<string, string | undefined>;

interface Reader {
  problems: string[];
  get(name: string): string | undefined;
}

function makeReader(sources: Source[]): Reader {
  const problems: string[] = [];
  return {
    problems,
    get(name) {
      for (const s of sources) {
        const v = s[name];
        if (v !== undefined && v !== '') return v;
      }
      return undefined;
    },
  };
}

function int(r: Reader, name: string, def: number, min: number, max: number): number {
  const raw = r.get(name);
  if (raw === undefined) return def;
  if (!/^-?\d+$/.test(raw.trim())) {
    r.problems.push(`${name}: expected an integer between ${min} and ${max}, got "${raw}"`);
    return def;
  }
  const n = Number(raw.trim());
  if (n < min || n > max) {
    r.problems.push(`${name}: expected an integer between ${min} and ${max}, got ${n}`);
    return def;
  }
  return n;
}

function bool(r: Reader, name: string, def: boolean): boolean {
  const raw = r.get(name);
  if (raw === undefined) return def;
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  r.problems.push(`${name}: expected true or false, got "${raw}"`);
  return def;
}

function oneOf<T extends string>(r: Reader, name: string, allowed: readonly T[], def: T): T {
  const raw = r.get(name);
  if (raw === undefined) return def;
  const v = raw.trim().toLowerCase();
  if ((allowed as readonly string[]).includes(v)) return v as T;
  r.problems.push(`${name}: expected one of ${allowed.join(', ')}, got "${raw}"`);
  return def;
}

function url(r: Reader, name: string, protocols: readonly string[]): string | undefined {
  const raw = r.get(name);
  if (raw === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw.trim());
  } catch {
    r.problems.push(
      `${name}: expected a URL (${protocols.map((p) => `${p}//…`).join(' or ')}), got "${redact(raw)}"`,
    );
    return undefined;
  }
  if (!protocols.includes(parsed.protocol)) {
    r.problems.push(
      `${name}: expected a URL with scheme ${protocols.join(' or ')}, got "${parsed.protocol}" in "${redact(raw)}"`,
    );
    return undefined;
  }
  return raw.trim();
}

/** A comma-separated list of URLs (a NATS cluster), each checked like `url`. */
function urlList(r: Reader, name: string, protocols: readonly string[]): string | undefined {
  const raw = r.get(name);
  if (raw === undefined) return undefined;
  const parts = raw.split(',').map((p) => p.trim());
  const before = r.problems.length;
  for (const part of parts) url({ problems: r.problems, get: () => part }, name, protocols);
  return r.problems.length === before ? parts.join(',') : undefined;
}

/** `TRUST_PROXY`: true/false, or comma-separated proxy addresses/CIDRs. */
function trustProxyOf(r: Reader): boolean | string {
  const raw = r.get('TRUST_PROXY')?.trim();
  if (raw === undefined) return false;
  if (/^(true|false)$/i.test(raw)) return raw.toLowerCase() === 'true';
  if (/^[0-9a-fA-F.:/]+(\s*,\s*[0-9a-fA-F.:/]+)*$/.test(raw)) return raw;
  r.problems.push(
    `TRUST_PROXY: expected true, false or proxy addresses (10.0.0.1,10.1.0.0/16), got "${raw}"`,
  );
  return false;
}

/** Hides a password in a URL so config problems can be logged safely. */
export function redact(u: string): string {
  try {
    const p = new URL(u);
    if (p.password) p.password = '***';
    // A user name alone may be a token (nats://TOKEN@host).
    else if (p.username) p.username = '***';
    for (const key of [...p.searchParams.keys()])
      if (/pass|secret|token|key/i.test(key)) p.searchParams.set(key, '***');
    return p.toString();
  } catch {
    return u.replace(/\/\/[^/@]*@/, '//***@');
  }
}

function readConfigFile(path: string, problems: string[]): Source {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    problems.push(
      `PUJIANG_CONFIG: cannot read config file "${path}" (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
    );
    return {};
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    problems.push(`PUJIANG_CONFIG: config file "${path}" is not valid JSON (${(e as Error).message})`);
    return {};
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    problems.push(`PUJIANG_CONFIG: config file "${path}" must hold a JSON object of VARIABLE: value pairs`);
    return {};
  }
  const out: Source = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (!KNOWN_VARIABLES.includes(k)) {
      problems.push(`${k}: unknown setting in config file "${path}"`);
      continue;
    }
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out[k] = String(v);
    else problems.push(`${k}: in config file "${path}" expected a string, number or boolean`);
  }
  return out;
}

/** Every variable Pujiang reads, for the config file check and the README table. */
export const KNOWN_VARIABLES: readonly string[] = [
  'PUJIANG_MODE',
  'HOST',
  'PORT',
  'DATA_DIR',
  'PUJIANG_MEMORY',
  'DATABASE_URL',
  'DATABASE_POOL_MAX',
  'DATABASE_STATEMENT_TIMEOUT_MS',
  'NATS_URL',
  'NATS_STREAM',
  'NATS_CONNECT_TIMEOUT_MS',
  'MQTT_URL',
  'LOG_LEVEL',
  'LOG_FORMAT',
  'PUJIANG_SECRET',
  'CORS_ORIGINS',
  'BODY_LIMIT_BYTES',
  'REQUEST_TIMEOUT_MS',
  'SHUTDOWN_GRACE_MS',
  'OUTBOX_POLL_MS',
  'OUTBOX_BATCH_SIZE',
  'OUTBOX_RETENTION_HOURS',
  'AUDIT_KEY_FILE',
  'AUDIT_CHECKPOINT_INTERVAL_MS',
  'AUDIT_CHECKPOINT_PENDING',
  'ACCESS_TOKEN_TTL_S',
  'REFRESH_TOKEN_TTL_S',
  'PASSWORD_MIN_LENGTH',
  'LOGIN_MAX_FAILURES',
  'LOGIN_LOCKOUT_S',
  'LOGIN_RATE_PER_MINUTE',
  'OIDC_ISSUER',
  'OIDC_JWKS_URL',
  'OIDC_AUDIENCE',
  'OIDC_USERNAME_CLAIM',
  'TRUST_PROXY',
  'TWIN_ACCESS',
  'TWIN_CONTEXT_TIMEOUT_MS',
  'TWIN_CONTEXT_MAX_BYTES',
  'TWIN_MAX_BATCH',
  'TWIN_NOTIFY_PRIVATE',
  'TWIN_NOTIFY_TIMEOUT_MS',
  'TWIN_NOTIFY_MAX_ATTEMPTS',
  'TWIN_NOTIFY_CONCURRENCY',
  'WORKFLOW_TIMER_INTERVAL_MS',
  'MEDIA_DIR',
  'MEDIA_MAX_BYTES',
  'OPS_WEBHOOK_TIMEOUT_MS',
];

export interface LoadConfigOptions {
  /** The process environment (only the composition root passes `process.env`). */
  env: Source;
  /** Command-line overrides, keyed by variable name (e.g. `{ PUJIANG_MEMORY: 'true' }`). */
  overrides?: Source;
  /** Working directory against which relative paths resolve. */
  cwd?: string;
  /** Whether stdout is a terminal (pretty logs by default). */
  isTTY?: boolean;
}

/** Parses the configuration; throws `ConfigError` listing every problem at once. */
export function loadConfig(options: LoadConfigOptions): Config {
  const cwd = options.cwd ?? '.';
  const overrides = options.overrides ?? {};
  const problems: string[] = [];
  const configPath = overrides['PUJIANG_CONFIG'] ?? options.env['PUJIANG_CONFIG'];
  const configFile = configPath ? resolve(cwd, configPath) : undefined;
  const fileSource = configFile ? readConfigFile(configFile, problems) : {};
  const r = makeReader([overrides, options.env, fileSource]);
  r.problems.push(...problems);

  const mode = oneOf(r, 'PUJIANG_MODE', ['demo', 'production'] as const, 'demo');
  const host = r.get('HOST') ?? '127.0.0.1';
  const port = int(r, 'PORT', 8080, 0, 65535);
  const memory = bool(r, 'PUJIANG_MEMORY', false);
  const databaseUrl = url(r, 'DATABASE_URL', ['postgres:', 'postgresql:']);
  const natsUrl = urlList(r, 'NATS_URL', ['nats:', 'tls:']);
  const mqttUrl = url(r, 'MQTT_URL', ['mqtt:', 'mqtts:', 'ws:', 'wss:']);
  const secretRaw = r.get('PUJIANG_SECRET');
  const corsRaw = r.get('CORS_ORIGINS');
  let corsOrigins: string[] | '*' = [];
  if (corsRaw !== undefined) {
    if (corsRaw.trim() === '*') corsOrigins = '*';
    else {
      corsOrigins = corsRaw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
      for (const o of corsOrigins) {
        if (!/^https?:\/\/[^/\s]+$/.test(o))
          r.problems.push(
            `CORS_ORIGINS: expected "*" or comma-separated origins like https://ops.example, got "${o}"`,
          );
      }
    }
  }

  if (databaseUrl && memory) r.problems.push('PUJIANG_MEMORY: cannot be combined with DATABASE_URL');
  if (mode === 'production') {
    if (secretRaw === undefined)
      r.problems.push('PUJIANG_SECRET: required in production mode (at least 32 characters, kept secret)');
    else if (secretRaw === DEMO_SECRET)
      r.problems.push('PUJIANG_SECRET: the demo secret is refused in production mode; generate a new one');
    if (memory) r.problems.push('PUJIANG_MEMORY: a throw-away store is refused in production mode');
    if (corsOrigins === '*')
      r.problems.push('CORS_ORIGINS: "*" is refused in production mode; list the origins');
  }
  if (secretRaw !== undefined && secretRaw.length < 32)
    r.problems.push(`PUJIANG_SECRET: expected at least 32 characters, got ${secretRaw.length}`);

  const oidcIssuer = r.get('OIDC_ISSUER');
  const oidcJwks = url(r, 'OIDC_JWKS_URL', ['https:', 'http:']);
  const oidcAudience = r.get('OIDC_AUDIENCE');
  const oidcSet = [oidcIssuer, r.get('OIDC_JWKS_URL'), oidcAudience].filter((v) => v !== undefined).length;
  if (oidcSet > 0 && oidcSet < 3)
    r.problems.push(
      'OIDC_ISSUER, OIDC_JWKS_URL, OIDC_AUDIENCE: set all three to accept external tokens, or none',
    );
  if (mode === 'production' && oidcJwks?.startsWith('http:'))
    r.problems.push('OIDC_JWKS_URL: expected an https URL in production mode');
  const dataDir = resolve(cwd, r.get('DATA_DIR') ?? '.pujiang');
  const auditKeyRaw = r.get('AUDIT_KEY_FILE');
  const auditKeyFile = auditKeyRaw
    ? resolve(cwd, auditKeyRaw)
    : memory
      ? undefined
      : resolve(dataDir, 'audit-signing-key.pem');

  const config: Config = {
    mode,
    host,
    port,
    dataDir,
    memory,
    databaseUrl,
    databasePoolMax: int(r, 'DATABASE_POOL_MAX', 10, 1, 1000),
    statementTimeoutMs: int(r, 'DATABASE_STATEMENT_TIMEOUT_MS', 30_000, 100, 3_600_000),
    natsUrl,
    natsStream: r.get('NATS_STREAM') ?? 'PUJIANG',
    natsConnectTimeoutMs: int(r, 'NATS_CONNECT_TIMEOUT_MS', 10_000, 100, 600_000),
    mqttUrl,
    logLevel: oneOf(
      r,
      'LOG_LEVEL',
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const,
      'info',
    ),
    logFormat: oneOf(r, 'LOG_FORMAT', ['json', 'pretty'] as const, options.isTTY ? 'pretty' : 'json'),
    secret: secretRaw ?? DEMO_SECRET,
    corsOrigins,
    bodyLimitBytes: int(r, 'BODY_LIMIT_BYTES', 1024 * 1024, 1024, 1024 * 1024 * 1024),
    requestTimeoutMs: int(r, 'REQUEST_TIMEOUT_MS', 30_000, 100, 3_600_000),
    shutdownGraceMs: int(r, 'SHUTDOWN_GRACE_MS', 10_000, 100, 600_000),
    outboxPollMs: int(r, 'OUTBOX_POLL_MS', 500, 10, 60_000),
    outboxBatchSize: int(r, 'OUTBOX_BATCH_SIZE', 200, 1, 10_000),
    outboxRetentionHours: int(r, 'OUTBOX_RETENTION_HOURS', 24, 0, 24 * 365),
    auditKeyFile,
    auditCheckpointIntervalMs: int(r, 'AUDIT_CHECKPOINT_INTERVAL_MS', 60_000, 100, 86_400_000),
    auditCheckpointPending: int(r, 'AUDIT_CHECKPOINT_PENDING', 10_000, 1, 1_000_000),
    accessTokenTtlSeconds: int(r, 'ACCESS_TOKEN_TTL_S', 900, 30, 86_400),
    refreshTokenTtlSeconds: int(r, 'REFRESH_TOKEN_TTL_S', 7 * 86_400, 60, 90 * 86_400),
    passwordMinLength: int(r, 'PASSWORD_MIN_LENGTH', 10, 8, 128),
    loginMaxFailures: int(r, 'LOGIN_MAX_FAILURES', 5, 1, 100),
    loginLockoutSeconds: int(r, 'LOGIN_LOCKOUT_S', 900, 1, 86_400),
    loginRatePerMinute: int(r, 'LOGIN_RATE_PER_MINUTE', 30, 1, 100_000),
    oidc:
      oidcIssuer && oidcJwks && oidcAudience
        ? {
            issuer: oidcIssuer,
            jwksUrl: oidcJwks,
            audience: oidcAudience,
            usernameClaim: r.get('OIDC_USERNAME_CLAIM') ?? 'preferred_username',
          }
        : undefined,
    trustProxy: trustProxyOf(r),
    twinAccess: oneOf(r, 'TWIN_ACCESS', ['open', 'secured'] as const, mode === 'demo' ? 'open' : 'secured'),
    twinContextTimeoutMs: int(r, 'TWIN_CONTEXT_TIMEOUT_MS', 3_000, 50, 60_000),
    twinContextMaxBytes: int(r, 'TWIN_CONTEXT_MAX_BYTES', 1024 * 1024, 1024, 64 * 1024 * 1024),
    twinMaxBatch: int(r, 'TWIN_MAX_BATCH', 1_000, 1, 100_000),
    twinNotifyPrivate: bool(r, 'TWIN_NOTIFY_PRIVATE', mode === 'demo'),
    twinNotifyTimeoutMs: int(r, 'TWIN_NOTIFY_TIMEOUT_MS', 5_000, 50, 120_000),
    twinNotifyMaxAttempts: int(r, 'TWIN_NOTIFY_MAX_ATTEMPTS', 8, 1, 100),
    twinNotifyConcurrency: int(r, 'TWIN_NOTIFY_CONCURRENCY', 32, 1, 1_000),
    workflowTimerIntervalMs: int(r, 'WORKFLOW_TIMER_INTERVAL_MS', 5_000, 100, 3_600_000),
    mediaDir: resolve(
      cwd,
      r.get('MEDIA_DIR') ??
        (memory ? join(tmpdir(), `pujiang-media-${process.pid}`) : join(dataDir, 'media')),
    ),
    mediaMaxBytes: int(r, 'MEDIA_MAX_BYTES', 10 * 1024 * 1024, 1_024, 100 * 1024 * 1024),
    opsWebhookTimeoutMs: int(r, 'OPS_WEBHOOK_TIMEOUT_MS', 5_000, 50, 120_000),
    configFile,
  };
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(config.natsStream))
    r.problems.push(`NATS_STREAM: expected 1-64 letters, digits, _ or -, got "${config.natsStream}"`);

  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}

/** A snapshot of the process environment; the one place in Pujiang that reads `process.env`. */
export function readProcessEnv(): Source {
  return { ...process.env };
}

/** Which storage engine a config selects, for logs and test names. */
export function engineOf(config: Pick<Config, 'databaseUrl' | 'memory'>): 'postgres' | 'pglite' {
  return config.databaseUrl ? 'postgres' : 'pglite';
}
