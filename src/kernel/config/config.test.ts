import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, DEMO_SECRET, loadConfig, redact } from './config.ts';

function problems(env: Record<string, string>, overrides: Record<string, string> = {}): string[] {
  try {
    loadConfig({ env, overrides });
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
  return [];
}

describe('config', () => {
  it('has working defaults for a demo start', () => {
    const c = loadConfig({ env: {}, cwd: '/srv/pj' });
    assert.equal(c.mode, 'demo');
    assert.equal(c.port, 8080);
    assert.equal(c.dataDir, '/srv/pj/.pujiang');
    assert.equal(c.databaseUrl, undefined);
    assert.equal(c.secret, DEMO_SECRET);
    assert.equal(c.logFormat, 'json');
    assert.deepEqual(c.corsOrigins, []);
  });

  it('reads every documented variable', () => {
    const c = loadConfig({
      env: {
        PORT: '9000',
        DATABASE_URL: 'postgres://u:p@db:5432/city',
        NATS_URL: 'nats://bus:4222',
        MQTT_URL: 'mqtt://broker:1883',
        LOG_LEVEL: 'debug',
        LOG_FORMAT: 'pretty',
        CORS_ORIGINS: 'https://ops.example, https://app.example',
        BODY_LIMIT_BYTES: '2048',
        PUJIANG_MODE: 'production',
        PUJIANG_SECRET: 'x'.repeat(40),
      },
    });
    assert.equal(c.port, 9000);
    assert.equal(c.mode, 'production');
    assert.equal(c.natsUrl, 'nats://bus:4222');
    assert.equal(c.mqttUrl, 'mqtt://broker:1883');
    assert.deepEqual(c.corsOrigins, ['https://ops.example', 'https://app.example']);
    assert.equal(c.bodyLimitBytes, 2048);
  });

  it('reports every problem at once, naming the variable and what it expects', () => {
    const p = problems({
      PORT: 'eighty',
      LOG_LEVEL: 'loud',
      DATABASE_URL: 'mysql://x',
      NATS_URL: 'not a url',
      PUJIANG_MEMORY: 'maybe',
      BODY_LIMIT_BYTES: '-5',
    });
    assert.equal(p.length, 6, p.join('\n'));
    assert.match(p.join('\n'), /PORT: expected an integer between 0 and 65535, got "eighty"/);
    assert.match(
      p.join('\n'),
      /LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"/,
    );
    assert.match(p.join('\n'), /DATABASE_URL: expected a URL with scheme postgres: or postgresql:/);
    assert.match(p.join('\n'), /NATS_URL: expected a URL/);
    assert.match(p.join('\n'), /PUJIANG_MEMORY: expected true or false/);
    assert.match(p.join('\n'), /BODY_LIMIT_BYTES: expected an integer between 1024/);
  });

  it('accepts a NATS cluster as a comma-separated list and checks each member', () => {
    assert.equal(
      loadConfig({ env: { NATS_URL: 'nats://a:4222, nats://b:4222' } }).natsUrl,
      'nats://a:4222,nats://b:4222',
    );
    assert.match(
      problems({ NATS_URL: 'nats://a:4222,http://b' }).join('\n'),
      /NATS_URL: expected a URL with scheme/,
    );
  });

  it('redacts passwords, bare tokens and secret query parameters', () => {
    assert.equal(redact('postgres://u:pw@db:5432/x'), 'postgres://u:***@db:5432/x');
    assert.equal(redact('nats://s3cr3t-token@bus:4222'), 'nats://***@bus:4222');
    assert.ok(!redact('postgres://db/x?password=pw&sslmode=require').includes('pw&'));
  });

  it('never echoes a database password in a problem', () => {
    const p = problems({ DATABASE_URL: 'mysql://admin:hunter2@db/x' });
    assert.ok(!p.join('\n').includes('hunter2'), p.join('\n'));
  });

  it('refuses demo secrets, throw-away stores and open CORS in production', () => {
    assert.match(
      problems({ PUJIANG_MODE: 'production' }).join('\n'),
      /PUJIANG_SECRET: required in production/,
    );
    const p = problems({
      PUJIANG_MODE: 'production',
      PUJIANG_SECRET: DEMO_SECRET,
      PUJIANG_MEMORY: 'true',
      CORS_ORIGINS: '*',
    });
    assert.equal(p.length, 3, p.join('\n'));
    assert.match(p.join('\n'), /demo secret is refused/);
    assert.match(p.join('\n'), /throw-away store is refused/);
    assert.match(p.join('\n'), /"\*" is refused/);
    assert.match(problems({ PUJIANG_SECRET: 'short' }).join('\n'), /at least 32 characters, got 5/);
  });

  it('lets flags override the environment, and the environment override the config file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pj-config-'));
    const file = join(dir, 'pujiang.json');
    writeFileSync(file, JSON.stringify({ PORT: 7000, LOG_LEVEL: 'warn', PUJIANG_MEMORY: true }));
    const c = loadConfig({ env: { PUJIANG_CONFIG: file, LOG_LEVEL: 'error' }, overrides: { PORT: '7001' } });
    assert.equal(c.port, 7001);
    assert.equal(c.logLevel, 'error');
    assert.equal(c.memory, true);
    assert.equal(c.configFile, file);
  });

  it('reports a broken or unknown config file clearly', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pj-config-'));
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ "PORT": 80,');
    assert.match(problems({ PUJIANG_CONFIG: bad }).join('\n'), /is not valid JSON/);
    const unknown = join(dir, 'unknown.json');
    writeFileSync(unknown, JSON.stringify({ PROT: 80, PORT: { nested: true } }));
    const p = problems({ PUJIANG_CONFIG: unknown });
    assert.match(p.join('\n'), /PROT: unknown setting/);
    assert.match(p.join('\n'), /PORT: in config file .* expected a string, number or boolean/);
    assert.match(
      problems({ PUJIANG_CONFIG: join(dir, 'missing.json') }).join('\n'),
      /cannot read config file/,
    );
  });

  it('rejects a store that is both throw-away and external', () => {
    assert.match(
      problems({ PUJIANG_MEMORY: '1', DATABASE_URL: 'postgres://localhost/x' }).join('\n'),
      /cannot be combined with DATABASE_URL/,
    );
  });

  it('reads the trust settings: audit key, token lifetimes, sign-in limits, OIDC, trusted proxies', () => {
    const c = loadConfig({ env: {}, cwd: '/srv/pj' });
    assert.equal(c.auditKeyFile, '/srv/pj/.pujiang/audit-signing-key.pem');
    assert.equal(loadConfig({ env: { PUJIANG_MEMORY: 'true' } }).auditKeyFile, undefined);
    assert.equal(c.accessTokenTtlSeconds, 900);
    assert.equal(c.oidc, undefined);
    assert.equal(c.trustProxy, false);
    const full = loadConfig({
      env: {
        OIDC_ISSUER: 'https://idp.example',
        OIDC_JWKS_URL: 'https://idp.example/jwks',
        OIDC_AUDIENCE: 'pujiang',
        TRUST_PROXY: '10.0.0.1, 10.1.0.0/16',
        LOGIN_MAX_FAILURES: '3',
      },
    });
    assert.deepEqual(full.oidc, {
      issuer: 'https://idp.example',
      jwksUrl: 'https://idp.example/jwks',
      audience: 'pujiang',
      usernameClaim: 'preferred_username',
    });
    assert.equal(full.trustProxy, '10.0.0.1, 10.1.0.0/16');
    assert.equal(full.loginMaxFailures, 3);
    const found = problems({
      OIDC_ISSUER: 'https://idp.example',
      TRUST_PROXY: 'everyone; drop',
      PASSWORD_MIN_LENGTH: '4',
    });
    assert.ok(
      found.some((p) => p.startsWith('OIDC_ISSUER, OIDC_JWKS_URL, OIDC_AUDIENCE: set all three')),
      found.join('\n'),
    );
    assert.ok(found.some((p) => p.startsWith('TRUST_PROXY:')));
    assert.ok(found.some((p) => p.startsWith('PASSWORD_MIN_LENGTH:')));
    const prod = problems({
      PUJIANG_MODE: 'production',
      PUJIANG_SECRET: 'x'.repeat(40),
      OIDC_ISSUER: 'https://idp.example',
      OIDC_JWKS_URL: 'http://idp.example/jwks',
      OIDC_AUDIENCE: 'pujiang',
    });
    assert.ok(
      prod.some((p) => p.startsWith('OIDC_JWKS_URL: expected an https URL')),
      prod.join('\n'),
    );
  });
});
