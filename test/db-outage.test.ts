/**
 * PostgreSQL going away mid-run: requests get 503 with Retry-After (never a hang or a 500), the
 * readiness probe says so, and everything recovers when the database returns. PostgreSQL only:
 * the embedded engine lives inside the process and cannot be cut off from it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig, silentLogger, type PlatformModule } from '../src/kernel/index.ts';
import { MODULES, startPlatform, type Platform } from '../src/platform.ts';
import { createScratchDatabase, postgresUrl } from './helpers/engines.ts';
import { createTcpProxy, type TcpProxy } from './helpers/tcp-proxy.ts';

const adminUrl = postgresUrl();

describe('database outage on postgres', { skip: adminUrl ? false : 'DATABASE_URL not set' }, () => {
  let proxy: TcpProxy;
  let platform: Platform;
  let drop: () => Promise<void>;

  before(async () => {
    const scratch = await createScratchDatabase(adminUrl ?? '');
    drop = scratch.drop;
    const target = new URL(scratch.url);
    proxy = await createTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const viaProxy = new URL(scratch.url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const config = loadConfig({ env: { DATABASE_URL: viaProxy.toString(), LOG_LEVEL: 'silent' } });
    // A route that needs the database, as every business endpoint will.
    const probe: PlatformModule = {
      name: 'probe',
      start(app, { database }) {
        app.get('/api/v1/test/db', async () => {
          await database.db.selectFrom('kernel.outbox').select('seq').limit(1).execute();
          return { ok: true };
        });
      },
    };
    platform = await startPlatform({
      config,
      logger: silentLogger(),
      listen: false,
      modules: [...MODULES, probe],
    });
  });

  after(async () => {
    await platform.stop();
    await proxy.close();
    await drop();
  });

  it('answers 503 with Retry-After while the database is gone, and recovers when it returns', async () => {
    const ready = () => platform.http.inject({ method: 'GET', url: '/readyz' });
    assert.equal((await ready()).statusCode, 200);

    await proxy.cut();
    const started = Date.now();
    const down = await ready();
    assert.equal(down.statusCode, 503);
    assert.equal(down.headers['retry-after'], '5');
    assert.deepEqual(down.json<{ checks: { database: unknown } }>().checks.database, {
      ok: false,
      detail: 'unreachable',
    });
    assert.ok(Date.now() - started < 10_000, 'the probe answers promptly, it does not hang');

    // A request that needs the database gets a problem document, not a 500.
    const res = await platform.http.inject({ method: 'GET', url: '/api/v1/test/db' });
    assert.equal(res.statusCode, 503);
    assert.equal(res.json<{ code: string }>().code, 'database-unavailable');
    assert.equal(res.headers['retry-after'], '5');

    await proxy.restore();
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      status = (await ready()).statusCode;
      if (status !== 200) await sleep(100);
    }
    assert.equal(status, 200, 'readiness recovers after the database returns');
    assert.equal((await platform.http.inject({ method: 'GET', url: '/api/v1/test/db' })).statusCode, 200);
  });
});
