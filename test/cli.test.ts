/** The `pujiang` command as an operator meets it: help, config errors, start, graceful stop. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pujiang } from './helpers/cli.ts';
import { createScratchDatabase, postgresUrl } from './helpers/engines.ts';

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
