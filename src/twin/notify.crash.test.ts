/**
 * No notification is lost to a crash: the service (the real CLI, in a child process) makes
 * notifications while the receiver is failing, is killed with SIGKILL, and a restarted platform on
 * the same storage delivers every one of them once the receiver is back (at least once; a
 * duplicate is allowed, a gap is not). On every engine of this run (PGlite from its data folder).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pujiang } from '../../test/helpers/cli.ts';
import { engines, type TestDatabase } from '../../test/helpers/engines.ts';
import { startTestPlatform } from '../../test/helpers/platform.ts';
import { openDatabase, silentLogger } from '../kernel/index.ts';

const UPDATES = 20;
const NOTIFY_ENV = { TWIN_NOTIFY_TIMEOUT_MS: '300', TWIN_NOTIFY_MAX_ATTEMPTS: '20' };

for (const engine of engines()) {
  describe(`notifications across a kill -9 on ${engine.name}`, () => {
    it('delivers every notification pending at the crash after a restart', { timeout: 180_000 }, async () => {
      // The receiver fails (500) until the service has been killed, then accepts.
      let healthy = false;
      let attempts = 0;
      const values: number[] = [];
      const server = createServer((req: IncomingMessage, res: ServerResponse) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          attempts++;
          if (!healthy) {
            res.writeHead(500).end();
            return;
          }
          const body = JSON.parse(Buffer.concat(chunks).toString()) as {
            data: { level: { value: number } }[];
          };
          for (const e of body.data) values.push(e.level.value);
          res.writeHead(204).end();
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const hook = `http://127.0.0.1:${(server.address() as AddressInfo).port}/valves`;

      let t: TestDatabase | undefined;
      const dataDir = engine.name === 'pglite' ? mkdtempSync(join(tmpdir(), 'pujiang-crash-')) : undefined;
      try {
        if (engine.name === 'postgres') t = await engine.open();
        const storage: Record<string, string> = t?.url
          ? { DATABASE_URL: t.url }
          : { DATA_DIR: dataDir ?? '' };
        let made = 0;
        let failure: unknown;
        const run = await pujiang(
          ['start', '--port', '0'],
          { ...storage, ...NOTIFY_ENV, LOG_LEVEL: 'info', OUTBOX_POLL_MS: '50' },
          (line, kill) => {
            if (!line.includes('Pujiang is listening')) return;
            const url = (JSON.parse(line) as { url: string }).url;
            const call = async (method: string, path: string, body: unknown) => {
              const res = await fetch(`${url}/ngsi-ld/v1${path}`, {
                method,
                headers: { 'content-type': 'application/json' },
                body: JSON.stringify(body),
              });
              if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
            };
            void (async () => {
              await call('POST', '/subscriptions', {
                type: 'Subscription',
                entities: [{ type: 'Valve' }],
                notification: { endpoint: { uri: hook } },
              });
              await call('POST', '/entities', {
                id: 'urn:ngsi-ld:Valve:1',
                type: 'Valve',
                level: { type: 'Property', value: 0 },
              });
              made++;
              for (let i = 1; i <= UPDATES; i++) {
                await call('PATCH', `/entities/${encodeURIComponent('urn:ngsi-ld:Valve:1')}/attrs`, {
                  level: { type: 'Property', value: i },
                });
                made++;
              }
              // Every change is committed; some notifications have been tried and failed.
              while (attempts === 0) await sleep(20);
              kill('SIGKILL');
            })().catch((e: unknown) => {
              failure = e;
              kill('SIGKILL');
            });
          },
          120_000,
        );
        assert.equal(failure, undefined);
        assert.equal(run.signal, 'SIGKILL', run.stderr);
        assert.equal(made, UPDATES + 1);
        assert.ok(values.length === 0, 'nothing was delivered before the crash');

        healthy = true;
        const restarted = t ?? {
          database: await openDatabase({ dataDir: dataDir ?? '', logger: silentLogger() }),
          url: undefined,
          dispose: async () => undefined,
        };
        const p = await startTestPlatform(restarted, { env: NOTIFY_ENV });
        try {
          const want = Array.from({ length: UPDATES + 1 }, (_, i) => i);
          const end = Date.now() + 60_000;
          while (new Set(values).size < want.length && Date.now() < end) await sleep(100);
          assert.deepEqual(
            [...new Set(values)].sort((a, b) => a - b),
            want,
          );
        } finally {
          await p.stop();
          if (!t) await restarted.database.close();
        }
      } finally {
        await t?.dispose();
        if (dataDir) rmSync(dataDir, { recursive: true, force: true });
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      }
    });
  });
}
