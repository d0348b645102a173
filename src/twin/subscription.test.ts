/**
 * NGSI-LD subscriptions and notifications over HTTP (ETSI GS CIM 009 v1.8 §5.8, §5.2.12–15), on
 * every engine of this run, with real receivers on loopback: CRUD and status; notifications on
 * entity changes (format, attributes, receiverInfo, @context); entity selectors, watchedAttributes,
 * triggers, q, geoQ, throttling, periodic timeInterval, expiresAt, isActive; receivers that answer
 * 500, hang, close the connection or refuse for good (retries with backoff, status visible, other
 * subscriptions unaffected); MQTT endpoints (when MQTT_URL is set); the SSRF guard; secured mode;
 * and bad input.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import { sql } from 'kysely';
import { engines, type TestDatabase } from '../../test/helpers/engines.ts';
import { signIn, startTestPlatform } from '../../test/helpers/platform.ts';
import { until } from '../../test/helpers/wait.ts';
import { readProcessEnv } from '../kernel/index.ts';
import type { Platform } from '../platform.ts';
import { firedTriggers } from './notify.service.ts';

const ERR = 'https://uri.etsi.org/ngsi-ld/errors/';
const JSON_CT = { 'content-type': 'application/json' };
const enc = encodeURIComponent;
type Obj = Record<string, unknown>;

interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  body: Obj;
  at: number;
}

/** A loopback receiver; `behave` decides each answer by path (200 by default). */
async function receiver(
  behave: (path: string, n: number) => 'ok' | 'fail' | 'hang' | 'close' | 'gone' = () => 'ok',
): Promise<{ url: string; got: Received[]; attempts: Map<string, number>; close(): Promise<void> }> {
  const got: Received[] = [];
  const attempts = new Map<string, number>();
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      const n = (attempts.get(path) ?? 0) + 1;
      attempts.set(path, n);
      const mode = behave(path, n);
      if (mode === 'hang') return;
      if (mode === 'close') {
        req.socket.destroy();
        return;
      }
      if (mode === 'fail') {
        res.writeHead(500).end();
        return;
      }
      if (mode === 'gone') {
        res.writeHead(404).end();
        return;
      }
      got.push({
        path,
        headers: req.headers,
        body: JSON.parse(Buffer.concat(chunks).toString()) as Obj,
        at: Date.now(),
      });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    got,
    attempts,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('notification triggers (pure)', () => {
  it('fires entity and attribute triggers, watched attributes narrowing them', () => {
    const e = { tenant: '', id: 'urn:x', types: [], created: ['a'], updated: ['b'], deleted: [] };
    assert.deepEqual([...firedTriggers({ action: 'merge', ...e }, undefined)].sort(), [
      'attributeCreated',
      'attributeUpdated',
      'entityUpdated',
    ]);
    assert.deepEqual([...firedTriggers({ action: 'merge', ...e }, ['b'])].sort(), [
      'attributeUpdated',
      'entityUpdated',
    ]);
    assert.deepEqual([...firedTriggers({ action: 'merge', ...e }, ['z'])], []);
    assert.deepEqual(
      [...firedTriggers({ action: 'delete', tenant: '', id: 'x', types: [] }, undefined)],
      ['entityDeleted'],
    );
  });
});

for (const engine of engines()) {
  describe(`NGSI-LD subscriptions on ${engine.name}`, () => {
    let t: TestDatabase;
    let p: Platform;
    let rx: Awaited<ReturnType<typeof receiver>>;

    before(async () => {
      t = await engine.open();
      p = await startTestPlatform(t, {
        env: { TWIN_NOTIFY_TIMEOUT_MS: '1000', TWIN_NOTIFY_MAX_ATTEMPTS: '3', OUTBOX_POLL_MS: '50' },
      });
      rx = await receiver((path, n) => {
        if (path.startsWith('/fail-then-ok')) return n === 1 ? 'fail' : 'ok';
        if (path.startsWith('/hang')) return 'hang';
        if (path.startsWith('/close')) return 'close';
        if (path.startsWith('/gone')) return 'gone';
        return 'ok';
      });
    });
    after(async () => {
      await p.stop();
      await rx.close();
      await t.dispose();
    });

    const api = async (
      method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
      url: string,
      body?: unknown,
      headers: Record<string, string> = {},
      platform = p,
    ) =>
      platform.http.inject({
        method,
        url: `/ngsi-ld/v1${url}`,
        headers: body === undefined ? headers : { ...JSON_CT, ...headers },
        ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
      });
    const problem = (
      res: { statusCode: number; body: string },
      type: string,
      status: number,
      detail?: RegExp,
    ) => {
      assert.equal(res.statusCode, status, res.body);
      const b = JSON.parse(res.body) as { type: string; detail: string };
      assert.equal(b.type, `${ERR}${type}`, res.body);
      if (detail) assert.match(b.detail, detail);
    };
    const subscribe = async (body: Obj): Promise<string> => {
      const res = await api('POST', '/subscriptions', { type: 'Subscription', ...body });
      assert.equal(res.statusCode, 201, res.body);
      return decodeURIComponent(String(res.headers['location']).split('/').pop() ?? '');
    };
    const status = async (id: string): Promise<Obj> => {
      const res = await api('GET', `/subscriptions/${enc(id)}`);
      assert.equal(res.statusCode, 200, res.body);
      return (JSON.parse(res.body) as Obj)['notification'] as Obj;
    };
    const entity = (id: string, type: string, extra: Obj = {}) => ({ id, type, ...extra });
    // Notifications at a path, one per notification id: a retry after a slow answer may repeat one
    // (delivery is at least once), which is not a second notification.
    const at = (path: string) =>
      rx.got.filter(
        (g, i) => g.path === path && rx.got.findIndex((x) => x.body['id'] === g.body['id']) === i,
      );

    it('creates, retrieves, lists, pauses and deletes a subscription', async () => {
      const id = await subscribe({
        id: 'urn:ngsi-ld:Subscription:crud',
        subscriptionName: '路灯状态',
        entities: [{ type: 'Streetlight' }],
        notification: { endpoint: { uri: `${rx.url}/crud` } },
      });
      assert.equal(id, 'urn:ngsi-ld:Subscription:crud');
      problem(
        await api('POST', '/subscriptions', {
          type: 'Subscription',
          id,
          entities: [{ type: 'Streetlight' }],
          notification: { endpoint: { uri: `${rx.url}/crud` } },
        }),
        'AlreadyExists',
        409,
      );
      const got = JSON.parse((await api('GET', `/subscriptions/${enc(id)}?options=sysAttrs`)).body) as Obj;
      assert.equal(got['status'], 'active');
      assert.equal(got['isActive'], true);
      assert.deepEqual(got['entities'], [{ type: 'Streetlight' }]);
      assert.deepEqual(got['notificationTrigger'], ['attributeCreated', 'attributeUpdated']);
      assert.equal((got['notification'] as Obj)['timesSent'], 0);
      assert.equal((got['notification'] as Obj)['format'], 'normalized');
      assert.equal(typeof got['createdAt'], 'string');
      const list = await api('GET', '/subscriptions?count=true');
      assert.equal(list.headers['ngsild-results-count'], '1');
      assert.equal((await api('PATCH', `/subscriptions/${enc(id)}`, { isActive: false })).statusCode, 204);
      assert.equal(
        (JSON.parse((await api('GET', `/subscriptions/${enc(id)}`)).body) as Obj)['status'],
        'paused',
      );
      problem(
        await api('PATCH', `/subscriptions/${enc(id)}`, { id: 'urn:other' }),
        'BadRequestData',
        400,
        /cannot be changed/,
      );
      assert.equal((await api('DELETE', `/subscriptions/${enc(id)}`)).statusCode, 204);
      problem(await api('GET', `/subscriptions/${enc(id)}`), 'ResourceNotFound', 404);
      problem(await api('DELETE', `/subscriptions/${enc(id)}`), 'ResourceNotFound', 404);
      const audit = await sql<{
        action: string;
      }>`select action from trust.audit_queue where resource_id = ${id}
        union all select action from trust.audit_records where resource_id = ${id}`.execute(t.database.db);
      assert.deepEqual(audit.rows.map((r) => r.action).sort(), [
        'twin.subscription.create',
        'twin.subscription.delete',
        'twin.subscription.update',
      ]);
    });

    it('notifies on entity changes in the subscribed format, with receiverInfo and the @context link', async () => {
      await subscribe({
        entities: [{ type: 'Bin', idPattern: '^urn:ngsi-ld:Bin:baoshan' }],
        notification: {
          attributes: ['fillLevel'],
          format: 'keyValues',
          endpoint: { uri: `${rx.url}/bins`, receiverInfo: [{ key: 'X-Auth-Token', value: 'secret-1' }] },
        },
      });
      assert.equal(
        (
          await api(
            'POST',
            '/entities',
            entity('urn:ngsi-ld:Bin:baoshan-1', 'Bin', {
              fillLevel: { type: 'Property', value: 0.3 },
              owner: { type: 'Property', value: 'x' },
            }),
          )
        ).statusCode,
        201,
      );
      await api(
        'POST',
        '/entities',
        entity('urn:ngsi-ld:Bin:pudong-1', 'Bin', { fillLevel: { type: 'Property', value: 0.1 } }),
      );
      assert.equal(
        (
          await api('PATCH', `/entities/${enc('urn:ngsi-ld:Bin:baoshan-1')}/attrs`, {
            fillLevel: { type: 'Property', value: 0.9 },
          })
        ).statusCode,
        204,
      );
      const got = await until('two bin notifications', () => at('/bins').length >= 2 && at('/bins'));
      const n = got[1] as Received;
      assert.equal(n.headers['content-type'], 'application/json');
      assert.equal(n.headers['x-auth-token'], 'secret-1');
      assert.match(String(n.headers['link']), /ngsi-ld-core-context/);
      assert.equal(n.body['type'], 'Notification');
      assert.match(String(n.body['id']), /^urn:ngsi-ld:Notification:/);
      assert.deepEqual(n.body['data'], [{ id: 'urn:ngsi-ld:Bin:baoshan-1', type: 'Bin', fillLevel: 0.9 }]);
      assert.deepEqual((got[0] as Received).body['data'], [
        { id: 'urn:ngsi-ld:Bin:baoshan-1', type: 'Bin', fillLevel: 0.3 },
      ]);
      await sleep(200);
      assert.equal(at('/bins').length, 2, 'the pudong bin does not match the idPattern');
    });

    it('honours watchedAttributes, q, geoQ, triggers and ld+json', async () => {
      await subscribe({
        entities: [{ type: 'Sensor' }],
        watchedAttributes: ['temperature'],
        q: 'temperature>30',
        geoQ: {
          georel: 'within',
          geometry: 'Polygon',
          coordinates: [
            [
              [121.3, 31.3],
              [121.5, 31.3],
              [121.5, 31.5],
              [121.3, 31.5],
              [121.3, 31.3],
            ],
          ],
        },
        notification: { endpoint: { uri: `${rx.url}/hot`, accept: 'application/ld+json' } },
      });
      await subscribe({
        entities: [{ type: 'Sensor' }],
        notificationTrigger: ['entityDeleted'],
        notification: { endpoint: { uri: `${rx.url}/deleted` } },
      });
      const inside = { type: 'GeoProperty', value: { type: 'Point', coordinates: [121.4, 31.4] } };
      const outside = { type: 'GeoProperty', value: { type: 'Point', coordinates: [121.8, 31.1] } };
      await api(
        'POST',
        '/entities',
        entity('urn:ngsi-ld:Sensor:1', 'Sensor', {
          temperature: { type: 'Property', value: 20 },
          humidity: { type: 'Property', value: 1 },
          location: inside,
        }),
      );
      await api(
        'POST',
        '/entities',
        entity('urn:ngsi-ld:Sensor:2', 'Sensor', {
          temperature: { type: 'Property', value: 20 },
          location: outside,
        }),
      );
      // Changes follow each other faster than notifications go out: each is matched and shown as
      // it left the entity (the event carries that state), not as the entity is by then.
      const patch = (id: string, body: Obj) => api('PATCH', `/entities/${enc(id)}/attrs`, body);
      await patch('urn:ngsi-ld:Sensor:1', { humidity: { type: 'Property', value: 99 } }); // not watched
      await patch('urn:ngsi-ld:Sensor:1', { temperature: { type: 'Property', value: 25 } }); // q false
      await patch('urn:ngsi-ld:Sensor:2', { temperature: { type: 'Property', value: 35 } }); // outside
      await patch('urn:ngsi-ld:Sensor:1', { temperature: { type: 'Property', value: 35 } }); // yes
      await patch('urn:ngsi-ld:Sensor:1', { temperature: { type: 'Property', value: 10 } }); // q false again
      const hot = await until('the hot notification', () => at('/hot')[0]);
      assert.equal(hot.headers['content-type'], 'application/ld+json');
      assert.ok(hot.body['@context']);
      const [first] = hot.body['data'] as Obj[];
      assert.ok(first);
      assert.equal(first['id'], 'urn:ngsi-ld:Sensor:1');
      assert.deepEqual(first['temperature'], { type: 'Property', value: 35 });
      assert.equal((await api('DELETE', `/entities/${enc('urn:ngsi-ld:Sensor:2')}`)).statusCode, 204);
      const deleted = await until('the deletion notification', () => at('/deleted')[0]);
      assert.equal((deleted.body['data'] as Obj[])[0]?.['id'], 'urn:ngsi-ld:Sensor:2');
      assert.equal(typeof (deleted.body['data'] as Obj[])[0]?.['deletedAt'], 'string');
      await sleep(300);
      assert.equal(at('/hot').length, 1);
      assert.equal(at('/deleted').length, 1, 'creations and updates are not entityDeleted');
    });

    it('throttles, stops after expiresAt and when paused', async () => {
      const throttled = await subscribe({
        entities: [{ type: 'Pump' }],
        throttling: 30,
        notification: { endpoint: { uri: `${rx.url}/throttled` } },
      });
      await subscribe({
        entities: [{ type: 'Pump' }],
        isActive: false,
        notification: { endpoint: { uri: `${rx.url}/paused` } },
      });
      const expiring = await subscribe({
        entities: [{ type: 'Pump' }],
        expiresAt: new Date(Date.now() + 1_500).toISOString(),
        notification: { endpoint: { uri: `${rx.url}/expiring` } },
      });
      await api(
        'POST',
        '/entities',
        entity('urn:ngsi-ld:Pump:1', 'Pump', { flow: { type: 'Property', value: 1 } }),
      );
      for (let i = 2; i <= 4; i++)
        await api('PATCH', `/entities/${enc('urn:ngsi-ld:Pump:1')}/attrs`, {
          flow: { type: 'Property', value: i },
        });
      await until('the expiring subscription notified', () => at('/expiring').length >= 4);
      assert.equal(at('/throttled').length, 1);
      await sleep(1_600);
      assert.equal(
        (JSON.parse((await api('GET', `/subscriptions/${enc(expiring)}`)).body) as Obj)['status'],
        'expired',
      );
      await api('PATCH', `/entities/${enc('urn:ngsi-ld:Pump:1')}/attrs`, {
        flow: { type: 'Property', value: 9 },
      });
      await sleep(300);
      assert.equal(at('/expiring').length, 4);
      assert.equal(at('/paused').length, 0, 'a paused subscription is not notified');
      assert.equal((await status(throttled))['timesSent'], 1);
    });

    it('retries a failing receiver with backoff and shows the status; other subscriptions are unaffected', async () => {
      const flaky = await subscribe({
        entities: [{ type: 'Gate' }],
        notification: { endpoint: { uri: `${rx.url}/fail-then-ok` } },
      });
      const hang = await subscribe({
        entities: [{ type: 'Gate' }],
        notification: { endpoint: { uri: `${rx.url}/hang` } },
      });
      const close = await subscribe({
        entities: [{ type: 'Gate' }],
        notification: { endpoint: { uri: `${rx.url}/close` } },
      });
      const gone = await subscribe({
        entities: [{ type: 'Gate' }],
        notification: { endpoint: { uri: `${rx.url}/gone` } },
      });
      await subscribe({
        entities: [{ type: 'Gate' }],
        notification: { endpoint: { uri: `${rx.url}/healthy` } },
      });
      await api(
        'POST',
        '/entities',
        entity('urn:ngsi-ld:Gate:1', 'Gate', { open: { type: 'Property', value: true } }),
      );
      const started = Date.now();
      const healthy = await until('the healthy receiver', () => at('/healthy')[0]);
      assert.ok(
        healthy.at - started < 1_000,
        `healthy receiver waited ${healthy.at - started} ms behind a hanging one`,
      );
      // The permanent refusal (404) fails at once, without retries.
      await until('the 404 recorded', async () => (await status(gone))['timesFailed'] === 1);
      const g = await status(gone);
      assert.equal(g['status'], 'failed');
      assert.equal(g['lastFailureReason'], 'HTTP 404');
      assert.equal(rx.attempts.get('/gone'), 1);
      const log = `/api/v1/twin/subscriptions/${enc(gone)}/notifications`;
      assert.equal((await p.http.inject({ method: 'GET', url: log })).statusCode, 401);
      const history = await p.http.inject({ method: 'GET', url: log, headers: await signIn(p, 'admin') });
      assert.equal(history.statusCode, 200, history.body);
      assert.deepEqual(
        history.json<Obj[]>().map((n) => [n['status'], n['attempts'], n['lastError']]),
        [['failed', 1, 'HTTP 404']],
      );
      // 500 then 200: delivered on the second attempt, about a second later.
      const ok = await until('the retried delivery', () => at('/fail-then-ok')[0]);
      assert.ok(ok.at - started >= 700, `retried after ${ok.at - started} ms`);
      const f = await until('flaky status', async () => {
        const s = await status(flaky);
        return s['timesSent'] === 1 && s;
      });
      assert.equal(f['status'], 'ok');
      assert.equal(typeof f['lastFailure'], 'string');
      assert.equal(typeof f['lastSuccess'], 'string');
      // The hanging and the closing receivers: three attempts each, then failed, all visible.
      for (const [id, reason] of [
        [hang, /timeout after 1000 ms/],
        [close, /connection closed|reset|socket/i],
      ] as const) {
        const s = await until(
          `${id} given up`,
          async () => {
            const x = await status(id);
            return x['timesFailed'] === 1 && x;
          },
          15_000,
        );
        assert.equal(s['status'], 'failed');
        assert.match(String(s['lastFailureReason']), reason);
        const rows = await sql<{
          status: string;
          attempts: number;
        }>`select status, attempts from twin.notifications
          where subscription_id = ${id}`.execute(t.database.db);
        assert.deepEqual(rows.rows, [{ status: 'failed', attempts: 3 }]);
      }
    });

    it('notifies periodically (timeInterval) with every matching entity', async () => {
      await api(
        'POST',
        '/entities',
        entity('urn:ngsi-ld:Meter:1', 'Meter', { kwh: { type: 'Property', value: 1 } }),
      );
      await api(
        'POST',
        '/entities',
        entity('urn:ngsi-ld:Meter:2', 'Meter', { kwh: { type: 'Property', value: 2 } }),
      );
      const id = await subscribe({
        entities: [{ type: 'Meter' }],
        timeInterval: 1,
        notification: { format: 'keyValues', endpoint: { uri: `${rx.url}/periodic` } },
      });
      const got = await until(
        'two periodic notifications',
        () => at('/periodic').length >= 2 && at('/periodic'),
        6_000,
      );
      assert.deepEqual(
        ((got[0] as Received).body['data'] as Obj[]).map((e) => [e['id'], e['kwh']]),
        [
          ['urn:ngsi-ld:Meter:1', 1],
          ['urn:ngsi-ld:Meter:2', 2],
        ],
      );
      assert.ok((got[1] as Received).at - (got[0] as Received).at >= 700);
      assert.equal((await api('DELETE', `/subscriptions/${enc(id)}`)).statusCode, 204);
    });

    it('refuses bad subscriptions with BadRequestData and stores nothing', async () => {
      const ep = { endpoint: { uri: `${rx.url}/x` } };
      const bad: [Obj, RegExp][] = [
        [{ entities: [{ type: 'T' }] }, /notification: required/],
        [
          { entities: [{ type: 'T' }], notification: { endpoint: { uri: 'ftp://example.org/x' } } },
          /endpoint/,
        ],
        [{ entities: [{ type: 'T' }], notification: { endpoint: { uri: 'not a uri' } } }, /endpoint/],
        [
          { entities: [{ type: 'T' }], notification: { endpoint: { uri: 'mqtt://127.0.0.1:1883/a/#' } } },
          /endpoint/,
        ],
        [{ entities: [{ type: 'T' }], notification: { endpoint: {} } }, /endpoint/],
        [{ entities: [{ type: 'T' }], q: 'a==', notification: ep }, /^q:/],
        [
          {
            entities: [{ type: 'T' }],
            geoQ: { georel: 'near', geometry: 'Point', coordinates: [121, 31] },
            notification: ep,
          },
          /geoQ/,
        ],
        [{ entities: [{ type: 'T' }], timeInterval: 10, throttling: 5, notification: ep }, /throttling/],
        [
          { entities: [{ type: 'T' }], timeInterval: 10, watchedAttributes: ['a'], notification: ep },
          /timeInterval/,
        ],
        [{ entities: [{ type: 'T' }], timeInterval: -1, notification: ep }, /timeInterval/],
        [{ entities: [{ type: 'T' }], expiresAt: '2020-01-01T00:00:00Z', notification: ep }, /future/],
        [{ entities: [{ id: 'urn:x:1' }], notification: ep }, /type: required/],
        [{ entities: [{ type: 'T', id: 'urn:x:1', idPattern: '.*' }], notification: ep }, /exclude/],
        [{ entities: [{ type: 'T', idPattern: '(' }], notification: ep }, /regular expression/],
        [{ notification: ep }, /entities or watchedAttributes/],
        [
          { entities: [{ type: 'T' }], notificationTrigger: ['whenever'], notification: ep },
          /notificationTrigger/,
        ],
        [{ entities: [{ type: 'T' }], notification: { ...ep, format: 'xml' } }, /format/],
        [
          {
            entities: [{ type: 'T' }],
            notification: { endpoint: { uri: `${rx.url}/x`, accept: 'text/plain' } },
          },
          /accept/,
        ],
        [
          {
            entities: [{ type: 'T' }],
            notification: {
              endpoint: { uri: `${rx.url}/x`, receiverInfo: [{ key: 'Bad Header', value: 'x' }] },
            },
          },
          /receiverInfo/,
        ],
        [{ entities: [{ type: 'T' }], notification: ep, color: 'red' }, /not a member/],
        [{ entities: [{ type: 'T' }], notification: ep, isActive: 'yes' }, /isActive/],
      ];
      for (const [body, detail] of bad)
        problem(
          await api('POST', '/subscriptions', { type: 'Subscription', ...body }),
          'BadRequestData',
          400,
          detail,
        );
      problem(
        await api('POST', '/subscriptions', { type: 'Other', entities: [{ type: 'T' }], notification: ep }),
        'BadRequestData',
        400,
      );
      problem(await api('POST', '/subscriptions', [1]), 'BadRequestData', 400);
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from twin.subscriptions
        where body -> 'notification' -> 'endpoint' ->> 'uri' = ${`${rx.url}/x`}`.execute(t.database.db);
      assert.equal(rows[0]?.n, 0);
    });

    const mqttUrl = readProcessEnv()['MQTT_URL'];
    it('notifies an MQTT endpoint', { skip: mqttUrl ? false : 'MQTT_URL not set' }, async () => {
      const topic = `pujiang-test/${engine.name}/${Date.now()}`;
      const client = await mqtt.connectAsync(mqttUrl ?? '');
      try {
        const messages: Obj[] = [];
        client.on('message', (_t, payload) => messages.push(JSON.parse(payload.toString()) as Obj));
        await client.subscribeAsync(topic, { qos: 1 });
        const broker = new URL(mqttUrl ?? '');
        await subscribe({
          entities: [{ type: 'Hydrant' }],
          notification: {
            endpoint: {
              uri: `mqtt://${broker.host}/${topic}`,
              notifierInfo: [{ key: 'MQTT-QoS', value: '1' }],
              receiverInfo: [{ key: 'X-Area', value: '310113' }],
            },
          },
        });
        await api(
          'POST',
          '/entities',
          entity('urn:ngsi-ld:Hydrant:1', 'Hydrant', { pressure: { type: 'Property', value: 0.4 } }),
        );
        const m = await until('the MQTT notification', () => messages[0]);
        assert.equal((m['metadata'] as Obj)['X-Area'], '310113');
        const body = m['body'] as Obj;
        assert.equal(body['type'], 'Notification');
        assert.equal((body['data'] as Obj[])[0]?.['id'], 'urn:ngsi-ld:Hydrant:1');
      } finally {
        await client.endAsync();
      }
    });

    describe('with the SSRF guard on and in secured mode', () => {
      let guarded: Platform;
      before(async () => {
        guarded = await startTestPlatform(t, {
          env: { TWIN_NOTIFY_PRIVATE: 'false', TWIN_ACCESS: 'secured' },
        });
      });
      after(async () => {
        await guarded.stop();
      });
      const as = (user: string) => signIn(guarded, user);

      it('refuses loopback, private and link-local receivers, and non-administrators', async () => {
        const admin = await as('admin');
        for (const uri of [
          'http://127.0.0.1:9/x',
          'http://localhost:9/x',
          'http://10.1.2.3/x',
          'http://169.254.169.254/latest/meta-data',
          'http://[::1]/x',
          'mqtt://192.168.1.1/t',
        ])
          problem(
            await api(
              'POST',
              '/subscriptions',
              { type: 'Subscription', entities: [{ type: 'T' }], notification: { endpoint: { uri } } },
              admin,
              guarded,
            ),
            'BadRequestData',
            400,
            /not public/,
          );
        const body = {
          type: 'Subscription',
          entities: [{ type: 'T' }],
          notification: { endpoint: { uri: 'https://example.org/hook' } },
        };
        problem(await api('POST', '/subscriptions', body, {}, guarded), 'Unauthorized', 401);
        problem(
          await api('POST', '/subscriptions', body, await as('baoshan-ops'), guarded),
          'Forbidden',
          403,
        );
        problem(
          await api('GET', '/subscriptions', undefined, await as('baoshan-ops'), guarded),
          'Forbidden',
          403,
        );
        assert.equal((await api('POST', '/subscriptions', body, admin, guarded)).statusCode, 201);
      });
    });
  });
}
