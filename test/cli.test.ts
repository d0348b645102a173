/** The `pujiang` command as an operator meets it: help, config errors, start, graceful stop. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { readProcessEnv } from '../src/kernel/index.ts';
import { createScratchDatabase, postgresUrl } from './helpers/engines.ts';

const bin = new URL('../bin/pujiang.mjs', import.meta.url).pathname;

interface Run {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; `onLine` may act on output lines (e.g. send a signal once it is listening). */
function pujiang(
  args: string[],
  env: Record<string, string>,
  onLine?: (line: string, kill: (signal: NodeJS.Signals) => void) => void,
  timeoutMs = 90_000,
): Promise<Run> {
  const base = readProcessEnv();
  delete base['DATABASE_URL'];
  delete base['NATS_URL'];
  const proc = spawn(process.execPath, [bin, ...args], {
    env: { ...base, LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let pending = '';
  proc.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    pending += d.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const l of lines) onLine?.(l, (s) => proc.kill(s));
  });
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    }),
  );
}

describe('pujiang CLI', () => {
  it('prints help', async () => {
    const r = await pujiang(['--help'], {});
    assert.equal(r.code, 0);
    for (const c of ['start', 'migrate', 'openapi', 'config'])
      assert.match(r.stdout, new RegExp(`\\b${c}\\b`));
  });

  it('lists every configuration problem at once and exits 78', async () => {
    const r = await pujiang(['start'], { PORT: 'abc', LOG_LEVEL: 'shout', PUJIANG_MODE: 'production' });
    assert.equal(r.code, 78);
    assert.match(r.stderr, /PORT: expected an integer/);
    assert.match(r.stderr, /LOG_LEVEL: expected one of/);
    assert.match(r.stderr, /PUJIANG_SECRET: required in production mode/);
  });

  it('rejects unknown commands and flags with exit 2', async () => {
    assert.equal((await pujiang(['launch'], {})).code, 2);
    assert.equal((await pujiang(['start', '--turbo'], {})).code, 2);
  });

  it('fails clearly when PostgreSQL is unreachable', async () => {
    const r = await pujiang(['start'], {
      DATABASE_URL: 'postgres://pujiang:secret-pw@127.0.0.1:1/city',
      PUJIANG_MODE: 'production',
      PUJIANG_SECRET: 'p'.repeat(40),
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot reach PostgreSQL at 127\.0\.0\.1:1\/city/);
    assert.ok(
      !r.stderr.includes('secret-pw') && !r.stdout.includes('secret-pw'),
      'the password is never printed',
    );
  });

  it('starts on a throw-away embedded store, becomes ready, and stops gracefully on SIGTERM', async () => {
    let url: string | undefined;
    let readyStatus = 0;
    const r = await pujiang(['start', '--memory', '--port', '0'], {}, (line, kill) => {
      if (!line.includes('Pujiang is listening')) return;
      url = (JSON.parse(line) as { url: string }).url;
      void fetch(`${url}/readyz`).then((res) => {
        readyStatus = res.status;
        kill('SIGTERM');
      });
    });
    assert.ok(url, `never listened: ${r.stderr}`);
    assert.equal(readyStatus, 200);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /"msg":"stopped"/);
  });

  it('fails start-up clearly when NATS_URL is set but NATS is unreachable', async () => {
    const r = await pujiang(['start', '--memory', '--port', '0'], {
      NATS_URL: 'nats://127.0.0.1:1',
      NATS_CONNECT_TIMEOUT_MS: '300',
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot reach NATS at nats:\/\/127\.0\.0\.1:1 within 300 ms/);
  });

  const admin = postgresUrl();
  it(
    'migrates a PostgreSQL database and reports what it applied',
    { skip: admin ? false : 'DATABASE_URL not set' },
    async () => {
      const scratch = await createScratchDatabase(admin ?? '');
      try {
        const first = await pujiang(['migrate'], { DATABASE_URL: scratch.url });
        assert.equal(first.code, 0, first.stderr);
        assert.match(first.stdout, /applied [1-9]\d* migration\(s\)/);
        const again = await pujiang(['migrate'], { DATABASE_URL: scratch.url });
        assert.match(again.stdout, /applied 0 migration\(s\)/);
      } finally {
        await scratch.drop();
      }
    },
  );
});
