/** The HTTP surface, in-process (`inject`), on every engine of this run. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { engines, type TestDatabase } from '../../../test/helpers/engines.ts';
import { startTestPlatform } from '../../../test/helpers/platform.ts';
import type { Platform } from '../../platform.ts';
import { AppError, Errors } from '../errors/errors.ts';
import type { ModuleContext } from '../module.ts';
import { MODULES } from '../../platform.ts';

/** A module whose routes misbehave on purpose, to prove errors never leak internals. */
const faultyModule = {
  name: 'faulty',
  start(app: Platform['http'], { database }: ModuleContext) {
    app.get('/api/v1/test/crash', async () => {
      throw new Error('select secret from users where password = $1 — stack /srv/pujiang/src/x.ts:10');
    });
    app.get('/api/v1/test/conflict', async () => {
      throw new AppError(Errors.conflict, {
        detail: 'version 3 is stale',
        extensions: { currentVersion: 4 },
      });
    });
    app.get('/api/v1/test/slow', { handlerTimeout: 200 }, async () => {
      await new Promise((r) => setTimeout(r, 1_000));
      return { late: true };
    });
    app.post('/api/v1/test/echo', async (request) => ({ received: request.body }));
    app.get('/api/v1/test/duplicate', async () => {
      await database.transact(async (trx) => {
        const row = { consumer: 'http-test', event_id: '00000000-0000-4000-8000-000000000001' };
        await trx.insertInto('kernel.consumed_events').values(row).execute();
        await trx.insertInto('kernel.consumed_events').values(row).execute();
      });
      return { unreachable: true };
    });
  },
};

for (const engine of engines()) {
  describe(`HTTP on ${engine.name}`, () => {
    let t: TestDatabase;
    let p: Platform;
    before(async () => {
      t = await engine.open();
      p = await startTestPlatform(t, {
        env: { BODY_LIMIT_BYTES: '4096', CORS_ORIGINS: 'https://ops.example' },
        modules: [...MODULES, faultyModule],
      });
    });
    after(async () => {
      await p.stop();
      await t.dispose();
    });

    it('answers liveness and readiness with the checks', async () => {
      const live = await p.http.inject({ method: 'GET', url: '/healthz' });
      assert.equal(live.statusCode, 200);
      assert.deepEqual(live.json(), { status: 'ok' });
      const ready = await p.http.inject({ method: 'GET', url: '/readyz' });
      assert.equal(ready.statusCode, 200);
      const body = ready.json<{ ready: boolean; checks: Record<string, { ok: boolean }> }>();
      assert.equal(body.ready, true);
      assert.equal(body.checks['database']?.ok, true);
      assert.equal(body.checks['migrations']?.ok, true);
    });

    it('tells which engine and bus it runs on', async () => {
      const info = (await p.http.inject({ method: 'GET', url: '/api/v1/system' })).json<
        Record<string, unknown>
      >();
      assert.equal(info['engine'], engine.name === 'postgres' ? 'postgres' : 'pglite');
      assert.equal(info['bus'], 'local');
    });

    it('exposes Prometheus metrics: HTTP latency, DB pool, bus lag, process', async () => {
      await p.http.inject({ method: 'GET', url: '/healthz' });
      const res = await p.http.inject({ method: 'GET', url: '/metrics' });
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /text\/plain/);
      for (const name of [
        'pujiang_http_request_duration_seconds_bucket{le="0.001",method="GET",route="/healthz",status_code="200"}',
        'pujiang_db_pool_connections{state="total"}',
        'pujiang_outbox_pending_events',
        'pujiang_bus_lag_seconds',
        'pujiang_bus_connected 1',
        'pujiang_process_cpu_seconds_total',
      ])
        assert.ok(res.body.includes(name), `missing ${name}`);
    });

    it('serves an OpenAPI 3.1 document identical to the checked-in docs/openapi.json', async () => {
      const res = await p.http.inject({ method: 'GET', url: '/api/v1/openapi.json' });
      assert.equal(res.statusCode, 200);
      const doc = res.json<{ openapi: string; paths: Record<string, unknown> }>();
      assert.equal(doc.openapi, '3.1.0');
      assert.ok(doc.paths['/api/v1/codes/validate']);
      assert.ok(doc.paths['/readyz']);
      const checkedIn = JSON.parse(
        readFileSync(new URL('../../../docs/openapi.json', import.meta.url), 'utf8'),
      ) as {
        paths: Record<string, unknown>;
      };
      // The test-only routes of this file are not part of the product's document.
      const productPaths = Object.fromEntries(
        Object.entries(doc.paths).filter(([k]) => !k.startsWith('/api/v1/test/')),
      );
      assert.deepEqual(
        { ...doc, paths: productPaths },
        checkedIn,
        'docs/openapi.json is stale: run `npm run openapi` and commit it',
      );
      const ui = await p.http.inject({ method: 'GET', url: '/docs/' });
      assert.equal(ui.statusCode, 200);
      assert.match(ui.body, /swagger/i);
    });

    it('answers unknown routes with a 404 problem document', async () => {
      const res = await p.http.inject({ method: 'GET', url: '/api/v1/nothing-here?x=1' });
      assert.equal(res.statusCode, 404);
      assert.match(String(res.headers['content-type']), /application\/problem\+json/);
      const body = res.json<Record<string, unknown>>();
      assert.equal(body['code'], 'route-not-found');
      assert.equal(body['type'], '/problems/route-not-found');
      assert.equal(body['instance'], '/api/v1/nothing-here');
      const type = await p.http.inject({ method: 'GET', url: '/problems/route-not-found' });
      assert.equal(type.json<{ status: number }>().status, 404);
    });

    it('rejects malformed JSON, wrong content types, empty and oversized bodies with specific problems', async () => {
      const post = (payload: string, contentType: string) =>
        p.http.inject({
          method: 'POST',
          url: '/api/v1/codes/validate',
          payload,
          headers: { 'content-type': contentType },
        });
      const malformed = await post('{"kind": "division", ', 'application/json');
      assert.equal(malformed.statusCode, 400);
      assert.equal(malformed.json<{ code: string }>().code, 'malformed-json');
      const wrongType = await post('kind=division', 'application/x-www-form-urlencoded');
      assert.equal(wrongType.statusCode, 415);
      assert.equal(wrongType.json<{ code: string }>().code, 'unsupported-media-type');
      const text = await post('hello', 'text/plain');
      assert.equal(text.statusCode, 415);
      const empty = await post('', 'application/json');
      assert.equal(empty.statusCode, 400);
      const big = await post(
        JSON.stringify({ kind: 'division', value: 'x'.repeat(10_000) }),
        'application/json',
      );
      assert.equal(big.statusCode, 413);
      assert.equal(big.json<{ code: string }>().code, 'payload-too-large');
    });

    it('reports schema violations with their paths', async () => {
      const res = await p.http.inject({
        method: 'POST',
        url: '/api/v1/codes/validate',
        payload: { kind: 'passport', value: 42, extra: true },
      });
      assert.equal(res.statusCode, 400);
      const body = res.json<{ code: string; errors: { path: string; message: string }[] }>();
      assert.equal(body.code, 'validation-failed');
      const paths = body.errors.map((e) => e.path);
      assert.ok(paths.includes('/kind'), JSON.stringify(body.errors));
    });

    it('validates codes over HTTP: decoded on success, 422 with reason on failure, resident IDs masked', async () => {
      const ok = await p.http.inject({
        method: 'POST',
        url: '/api/v1/codes/validate',
        payload: { kind: 'division', value: '310113' },
      });
      assert.equal(ok.statusCode, 200);
      assert.equal(ok.json<{ value: { name: string } }>().value.name, '宝山区');
      const id = await p.http.inject({
        method: 'POST',
        url: '/api/v1/codes/validate',
        payload: { kind: 'resident-id', value: '11010519491231002X' },
      });
      assert.equal(id.statusCode, 200);
      assert.ok(!id.body.includes('11010519491231002X'), 'the full resident ID must not be echoed');
      assert.match(id.body, /110\*{11}002X/);
      const bad = await p.http.inject({
        method: 'POST',
        url: '/api/v1/codes/validate',
        payload: { kind: 'credit-code', value: '91350100M000100Y44' },
      });
      assert.equal(bad.statusCode, 422);
      const body = bad.json<{ code: string; reason: string; detail: string }>();
      assert.equal(body.code, 'invalid-credit-code');
      assert.equal(body.reason, 'checksum');
      assert.match(body.detail, /18th/);
    });

    it('never sends a stack trace, SQL or internal message to the client', async () => {
      const res = await p.http.inject({ method: 'GET', url: '/api/v1/test/crash' });
      assert.equal(res.statusCode, 500);
      assert.equal(res.json<{ code: string }>().code, 'internal');
      assert.ok(!/select|password|stack|\/srv\//i.test(res.body), res.body);
    });

    it('answers a constraint the database enforced with 409, not 500, and without SQL', async () => {
      const res = await p.http.inject({ method: 'GET', url: '/api/v1/test/duplicate' });
      assert.equal(res.statusCode, 409);
      assert.equal(res.json<{ code: string }>().code, 'conflict');
      assert.ok(!/consumed_events|duplicate key|insert/i.test(res.body), res.body);
    });

    it('renders catalogue errors with their extensions', async () => {
      const res = await p.http.inject({ method: 'GET', url: '/api/v1/test/conflict' });
      assert.equal(res.statusCode, 409);
      assert.deepEqual(
        { ...res.json<Record<string, unknown>>(), requestId: undefined },
        {
          type: '/problems/conflict',
          title: Errors.conflict.title,
          status: 409,
          detail: 'version 3 is stale',
          instance: '/api/v1/test/conflict',
          code: 'conflict',
          requestId: undefined,
          currentVersion: 4,
        },
      );
    });

    it('answers a handler that runs too long with 503 instead of hanging', async () => {
      const res = await p.http.inject({ method: 'GET', url: '/api/v1/test/slow' });
      assert.equal(res.statusCode, 503);
      assert.equal(res.json<{ code: string }>().code, 'handler-timeout');
    });

    it('echoes a valid request id, replaces an unsafe one, and sets security headers', async () => {
      const given = await p.http.inject({
        method: 'GET',
        url: '/healthz',
        headers: { 'x-request-id': 'abc-123' },
      });
      assert.equal(given.headers['x-request-id'], 'abc-123');
      const unsafe = await p.http.inject({
        method: 'GET',
        url: '/healthz',
        headers: { 'x-request-id': 'a b\r\nc' },
      });
      assert.match(String(unsafe.headers['x-request-id']), /^[0-9a-f-]{36}$/);
      assert.equal(given.headers['x-content-type-options'], 'nosniff');
      assert.match(String(given.headers['content-security-policy']), /default-src 'self'/);
      assert.equal(given.headers['x-frame-options'], 'SAMEORIGIN');
    });

    it('applies the CORS allow-list', async () => {
      const allowed = await p.http.inject({
        method: 'OPTIONS',
        url: '/api/v1/codes/validate',
        headers: { origin: 'https://ops.example', 'access-control-request-method': 'POST' },
      });
      assert.equal(allowed.headers['access-control-allow-origin'], 'https://ops.example');
      const denied = await p.http.inject({
        method: 'GET',
        url: '/healthz',
        headers: { origin: 'https://evil.example' },
      });
      assert.equal(denied.headers['access-control-allow-origin'], undefined);
    });

    it('accepts unicode and refuses prototype-pollution payloads harmlessly', async () => {
      const res = await p.http.inject({
        method: 'POST',
        url: '/api/v1/test/echo',
        payload: '{"name":"浦江 🌊","__proto__":{"polluted":true}}',
        headers: { 'content-type': 'application/json' },
      });
      assert.ok(res.statusCode === 200 || res.statusCode === 400, String(res.statusCode));
      assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
    });
  });
}
