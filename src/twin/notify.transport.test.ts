/**
 * Notification transport: endpoint validation, the SSRF guard's address table, HTTP delivery to
 * loopback receivers, MQTT failure paths against fake brokers, and MQTT delivery through a real
 * broker when MQTT_URL is set.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connectAsync, type MqttClient } from 'mqtt';
import { readProcessEnv } from '../kernel/index.ts';
import { isNgsiError } from './errors.ts';
import {
  checkNotificationHeaders,
  createNotifier,
  isPublicAddress,
  parseEndpoint,
  type Endpoint,
  type OutgoingNotification,
} from './notify.transport.ts';

const NOT_PUBLIC = /is not public \(TWIN_NOTIFY_PRIVATE=false\)$/;

/** Asserts `fn` throws BadRequestData whose detail matches `detail`. */
function assertBad(fn: () => unknown, detail: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isNgsiError(e), `expected an NgsiError, got ${String(e)}`);
    assert.equal(e.type, 'BadRequestData');
    assert.match(e.detail, detail);
    return true;
  });
}

const loopback = (uri: string): Endpoint => parseEndpoint(uri, { allowPrivate: true });

const notification = (n = 1) => ({
  id: `urn:ngsi-ld:Notification:${n}`,
  type: 'Notification',
  subscriptionId: 'urn:ngsi-ld:Subscription:s1',
  notifiedAt: '2025-01-01T00:00:00.000Z',
  data: [
    { id: 'urn:ngsi-ld:ParkingSpot:p1', type: 'ParkingSpot', status: { type: 'Property', value: 'free' } },
  ],
});

const message = (over: Partial<OutgoingNotification> = {}): OutgoingNotification => ({
  body: JSON.stringify(notification()),
  contentType: 'application/json',
  headers: {},
  ...over,
});

/** A port nothing listens on: bound once by us, then released. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

// ---------------------------------------------------------------------------------------------

describe('parseEndpoint', () => {
  it('refuses what is not a usable endpoint URI, saying why', () => {
    const refused: [unknown, RegExp][] = [
      [42, /must be a string/],
      [undefined, /must be a string/],
      ['', /must not be empty/],
      [`http://example.com/${'x'.repeat(2048)}`, /longer than 2048 characters/],
      ['http://exa mple.com/', /spaces or control characters/],
      ['http://example.com/a\nb', /spaces or control characters/],
      ['ftp://example.com/x', /scheme "ftp" is not supported/],
      ['urn:ngsi-ld:Receiver:1', /scheme "urn" is not supported/],
      ['/relative/notify', /not an absolute URI/],
      ['http:example.com/notify', /has no host/],
      ['mqtt:/topic', /has no host/],
      ['mqtt:///topic', /has no host/],
      ['http://', /not a valid absolute URI/],
      ['http://example.com/notify#section', /must not have a fragment/],
      ['http://user:secret@example.com/notify', /credentials in the URI are not allowed for http\(s\)/],
      ['https://token@example.com/notify', /credentials in the URI are not allowed/],
      ['http://example.com:0/notify', /port must be 1-65535/],
      ['http://example.com:70000/notify', /port must be 1-65535/],
      ['mqtt://broker.example.com:99999/t', /port must be 1-65535/],
      ['mqtt://broker.example.com', /MQTT endpoint needs a topic/],
      ['mqtt://broker.example.com/', /MQTT endpoint needs a topic/],
      ['mqtt://broker.example.com/city/+/parking', /must not contain wildcards \(\+ or #\)/],
      ['mqtts://broker.example.com/city/#', /must not contain wildcards/],
      ['mqtt://broker.example.com/city/%23', /must not contain wildcards/],
      ['mqtt://broker.example.com/city/%2B', /must not contain wildcards/],
      ['mqtt://broker.example.com/$SYS/broker', /reserved for brokers/],
      ['mqtt://broker.example.com/t?qos=1', /must not have a query/],
      ['mqtt://broker.example.com/t%zz', /malformed percent-encoding/],
      ['mqtt://broker.example.com/t%00', /U\+0000/],
    ];
    for (const [uri, detail] of refused) {
      assertBad(() => parseEndpoint(uri, { allowPrivate: true }), detail);
    }
  });

  it('refuses literal non-public hosts when private targets are not allowed', () => {
    const refused: [string, RegExp][] = [
      ['http://127.0.0.1:1026/notify', /: address 127\.0\.0\.1 is not public \(TWIN_NOTIFY_PRIVATE=false\)$/],
      ['http://10.1.2.3/notify', /address 10\.1\.2\.3 is not public/],
      ['http://169.254.169.254/latest/meta-data/', /address 169\.254\.169\.254 is not public/],
      ['https://[::1]:8443/notify', /address ::1 is not public/],
      ['http://[::ffff:192.168.1.1]/', NOT_PUBLIC],
      ['http://[fd00::1]/', /address fd00::1 is not public/],
      // The URL parser reads these as 127.0.0.1; so does the check.
      ['http://0x7f.1/', /address 127\.0\.0\.1 is not public/],
      ['http://2130706433/', /address 127\.0\.0\.1 is not public/],
      ['http://localhost:1026/notify', /host localhost is not public \(TWIN_NOTIFY_PRIVATE=false\)$/],
      ['http://receiver.localhost/notify', /host receiver\.localhost is not public/],
      ['mqtt://127.0.0.1:1883/city', /address 127\.0\.0\.1 is not public/],
      // mqtt: hosts are opaque to the URL parser; they are canonicalised as for http.
      ['mqtt://0x7f.1/city', /address 127\.0\.0\.1 is not public/],
      ['mqtts://LOCALHOST/city', /host localhost is not public/],
      ['mqtt://user:pw@192.168.0.10/city', /address 192\.168\.0\.10 is not public/],
    ];
    for (const [uri, detail] of refused) {
      assertBad(() => parseEndpoint(uri, { allowPrivate: false }), detail);
      assert.doesNotThrow(() => parseEndpoint(uri, { allowPrivate: true }), uri);
    }
  });

  it('names the member it checks', () => {
    assertBad(
      () => parseEndpoint('ftp://x/', { allowPrivate: true }),
      /^notification\.endpoint\.uri: scheme "ftp"/,
    );
    assertBad(
      () =>
        parseEndpoint('ftp://x/', { allowPrivate: true, path: 'subscriptions[0].notification.endpoint.uri' }),
      /^subscriptions\[0\]\.notification\.endpoint\.uri: /,
    );
  });

  it('accepts http(s), mqtt(s) with broker credentials, and public addresses', () => {
    const plain = parseEndpoint('http://receiver.example.com/notify', { allowPrivate: false });
    assert.equal(plain.scheme, 'http');
    assert.equal(plain.uri, 'http://receiver.example.com/notify');
    assert.equal(plain.topic, undefined);

    const secure = parseEndpoint('HTTPS://Receiver.Example.org:8443/ngsi/notify?token=abc', {
      allowPrivate: false,
    });
    assert.equal(secure.scheme, 'https');
    assert.equal(secure.url.hostname, 'receiver.example.org');
    assert.equal(secure.url.port, '8443');
    assert.equal(secure.url.search, '?token=abc');

    assert.equal(parseEndpoint('http://8.8.8.8/n', { allowPrivate: false }).url.hostname, '8.8.8.8');
    assert.equal(
      parseEndpoint('http://[2606:4700::1111]/n', { allowPrivate: false }).url.hostname,
      '[2606:4700::1111]',
    );

    const broker = parseEndpoint('mqtt://broker.example.com/city/parking', { allowPrivate: false });
    assert.equal(broker.scheme, 'mqtt');
    assert.equal(broker.topic, 'city/parking');
    assert.equal(broker.url.port, '');

    const tls = parseEndpoint('mqtts://pujiang:p%40ss@Broker.Example.COM:8883/a/b/', { allowPrivate: false });
    assert.equal(tls.scheme, 'mqtts');
    assert.equal(tls.topic, 'a/b/');
    assert.equal(tls.url.hostname, 'broker.example.com');
    assert.equal(tls.url.username, 'pujiang');
    assert.equal(decodeURIComponent(tls.url.password), 'p@ss');

    assert.equal(
      parseEndpoint('mqtt://broker.example.com/%E6%B5%A6%E6%B1%9F/%E5%81%9C%E8%BD%A6', {
        allowPrivate: false,
      }).topic,
      '浦江/停车',
    );

    // Loopback and private targets when the deployment allows them (demo mode).
    assert.equal(loopback('http://127.0.0.1:1026/notify').url.port, '1026');
    assert.equal(loopback('http://localhost/notify').url.hostname, 'localhost');
    assert.equal(loopback('mqtt://localhost:1883/t').topic, 't');
  });
});

describe('isPublicAddress', () => {
  it('refuses every non-public range and accepts public unicast', () => {
    const notPublic = [
      // unspecified, "this network"
      '0.0.0.0',
      '0.1.2.3',
      '::',
      // loopback
      '127.0.0.1',
      '127.255.255.254',
      '::1',
      // private
      '10.0.0.1',
      '10.255.255.255',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.0.1',
      '192.168.255.255',
      // CGNAT
      '100.64.0.1',
      '100.127.255.255',
      // link-local, cloud metadata
      '169.254.0.1',
      '169.254.169.254',
      'fe80::1',
      'fe80::1%eth0',
      'febf:ffff::1',
      // unique local
      'fc00::1',
      'fd12:3456:789a::1',
      // multicast
      '224.0.0.1',
      '239.255.255.250',
      'ff02::1',
      'ff0e::fb',
      // reserved, broadcast
      '240.0.0.1',
      '255.255.255.255',
      // documentation
      '192.0.2.1',
      '198.51.100.7',
      '203.0.113.9',
      '2001:db8::1',
      '2001:db8:ffff::1',
      '3fff::1',
      // benchmarking, IETF protocol assignments, 6to4 relay
      '198.18.0.1',
      '198.19.255.255',
      '2001:2::1',
      '192.0.0.8',
      '192.88.99.1',
      // IPv4-mapped: judged as the IPv4
      '::ffff:127.0.0.1',
      '::ffff:7f00:1',
      '::ffff:10.0.0.1',
      '::ffff:169.254.169.254',
      // NAT64 64:ff9b::/96: judged as the embedded IPv4; the local-use 64:ff9b:1::/48 never public
      '64:ff9b::a00:1',
      '64:ff9b::127.0.0.1',
      '64:ff9b:1::808:808',
      // discard-only
      '100::1',
      '100::ffff:ffff:ffff:ffff',
      // 6to4 of a private address, Teredo, deprecated IPv4-compatible
      '2002:a00:1::1',
      '2001::1',
      '::127.0.0.1',
      '::8.8.8.8',
      // not addresses at all
      '',
      'localhost',
      '[::1]',
      '127.1',
      '1.2.3.4.5',
      '8.8.8.256',
    ];
    const publicOnes = [
      '8.8.8.8',
      '1.1.1.1',
      '114.114.114.114',
      '121.47.0.1',
      '223.5.5.5',
      '180.76.76.76',
      '2606:4700::1111',
      '2001:4860:4860::8888',
      '240e:1::1',
      '2400:3200::1',
      '::ffff:8.8.8.8',
      '64:ff9b::808:808',
      '64:ff9b::114.114.114.114',
      '2002:808:808::1',
      // range edges
      '100.63.255.255',
      '100.128.0.0',
      '172.15.255.255',
      '172.32.0.0',
      '192.167.255.255',
      '192.169.0.0',
      '169.253.255.255',
      '198.17.255.255',
      '198.20.0.0',
      '223.255.255.255',
      '11.0.0.0',
      '126.255.255.255',
      '128.0.0.0',
      '2001:db7:ffff::1',
      '2001:db9::1',
      '2001:200::1',
    ];
    for (const ip of notPublic) assert.equal(isPublicAddress(ip), false, `${ip} must not be public`);
    for (const ip of publicOnes) assert.equal(isPublicAddress(ip), true, `${ip} must be public`);
  });
});

describe('checkNotificationHeaders', () => {
  it('accepts header-safe receiverInfo and refuses the rest', () => {
    assert.doesNotThrow(() =>
      checkNotificationHeaders({
        Authorization: 'Bearer abc',
        'X-Tenant': 'city',
        Link: '<https://x>; rel="y"',
      }),
    );
    assertBad(
      () => checkNotificationHeaders({ 'bad name': 'x' }),
      /receiverInfo: receiverInfo key "bad name"/,
    );
    assertBad(() => checkNotificationHeaders({ 'x-a': 'a\r\nInjected: 1' }), /characters not allowed/);
    assertBad(() => checkNotificationHeaders({ 'Content-Length': '1' }), /"Content-Length" is reserved/);
    assertBad(() => checkNotificationHeaders({ 'x-big': 'x'.repeat(20_000) }), /exceeds 16384 bytes/);
  });
});

// ---------------------------------------------------------------------------------------------

interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

describe('HTTP delivery', () => {
  const received: Received[] = [];
  let connections = 0;
  let port = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '';
      received.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      if (path === '/ok') res.writeHead(204).end();
      else if (path === '/fail') res.writeHead(500).end('boom');
      else if (path === '/missing') res.writeHead(404).end();
      else if (path === '/busy') res.writeHead(429, { 'retry-after': '7' }).end();
      else if (path === '/redirect') res.writeHead(302, { location: '/ok' }).end();
      else if (path === '/big') res.writeHead(200).end(Buffer.alloc(1024 * 1024, 120));
      else if (path === '/reset') req.socket.destroy();
      // '/hang': never answers.
    });
  });
  server.on('connection', () => connections++);
  const notifier = createNotifier({ timeoutMs: 2_000, allowPrivate: true });
  const at = (path: string) => loopback(`http://127.0.0.1:${port}${path}`);

  before(async () => {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    await notifier.close();
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });

  it('POSTs the body with its content type, receiverInfo headers and user agent', async () => {
    const body = JSON.stringify(notification(7));
    const outcome = await notifier.send(
      at('/ok'),
      message({
        body,
        contentType: 'application/ld+json',
        headers: { 'X-Tenant': 'city', Authorization: 'Bearer t0k3n' },
      }),
    );
    assert.equal(outcome.ok, true);
    assert.equal(outcome.status, 204);
    assert.equal(outcome.error, undefined);
    assert.ok(outcome.durationMs >= 0);
    const got = received.at(-1);
    assert.ok(got);
    assert.equal(got.path, '/ok');
    assert.equal(got.body, body);
    assert.equal(got.headers['content-type'], 'application/ld+json');
    assert.equal(got.headers['content-length'], String(Buffer.byteLength(body)));
    assert.equal(got.headers['x-tenant'], 'city');
    assert.equal(got.headers.authorization, 'Bearer t0k3n');
    assert.equal(got.headers['user-agent'], 'pujiang');
  });

  it('reports 5xx as retryable, other 4xx as permanent, 429 with its Retry-After', async () => {
    const fail = await notifier.send(at('/fail'), message());
    assert.deepEqual(
      { ...fail, durationMs: 0 },
      { ok: false, status: 500, error: 'HTTP 500', durationMs: 0 },
    );
    const missing = await notifier.send(at('/missing'), message());
    assert.equal(missing.ok, false);
    assert.equal(missing.status, 404);
    assert.equal(missing.error, 'HTTP 404');
    assert.equal(missing.permanent, true);
    const busy = await notifier.send(at('/busy'), message());
    assert.equal(busy.ok, false);
    assert.equal(busy.status, 429);
    assert.equal(busy.permanent, undefined);
    assert.equal(busy.retryAfterMs, 7_000);
  });

  it('does not follow a redirect', async () => {
    const seen = received.length;
    const outcome = await notifier.send(at('/redirect'), message());
    assert.equal(outcome.ok, false);
    assert.equal(outcome.status, 302);
    assert.match(outcome.error ?? '', /^HTTP 302 \(redirects are not followed\)$/);
    assert.equal(outcome.permanent, true);
    assert.deepEqual(
      received.slice(seen).map((r) => r.path),
      ['/redirect'],
    );
  });

  it('reads at most maxResponseBytes of an answer and still reports its status', async () => {
    const small = createNotifier({ timeoutMs: 2_000, allowPrivate: true, maxResponseBytes: 1024 });
    try {
      const outcome = await small.send(at('/big'), message());
      assert.equal(outcome.ok, true);
      assert.equal(outcome.status, 200);
    } finally {
      await small.close();
    }
  });

  it('times out a receiver that never answers within about timeoutMs', async () => {
    const quick = createNotifier({ timeoutMs: 300, allowPrivate: true });
    try {
      const outcome = await quick.send(at('/hang'), message());
      assert.equal(outcome.ok, false);
      assert.equal(outcome.error, 'timeout after 300 ms');
      assert.equal(outcome.permanent, undefined);
      assert.ok(outcome.durationMs >= 290 && outcome.durationMs < 1_500, `took ${outcome.durationMs} ms`);
    } finally {
      await quick.close();
    }
  });

  it('reports a receiver that drops the connection as retryable', async () => {
    const outcome = await notifier.send(at('/reset'), message());
    assert.equal(outcome.ok, false);
    assert.match(outcome.error ?? '', /^connection closed \(ECONNRESET\)$/);
    assert.equal(outcome.permanent, undefined);
  });

  it('reports a port nothing listens on as retryable', async () => {
    const outcome = await notifier.send(loopback(`http://127.0.0.1:${await closedPort()}/n`), message());
    assert.equal(outcome.ok, false);
    assert.equal(outcome.error, 'connection refused (ECONNREFUSED)');
    assert.equal(outcome.permanent, undefined);
  });

  it('refuses loopback targets without connecting when private targets are not allowed', async () => {
    const guarded = createNotifier({ timeoutMs: 2_000, allowPrivate: false });
    try {
      const [seenConnections, seenRequests] = [connections, received.length];
      const literal = await guarded.send(at('/ok'), message());
      assert.equal(literal.ok, false);
      assert.equal(literal.error, 'address 127.0.0.1 is not public (TWIN_NOTIFY_PRIVATE=false)');
      assert.equal(literal.permanent, true);
      // A name is resolved first and the answer checked: localhost never reaches the socket.
      const named = await guarded.send(loopback(`http://localhost:${port}/ok`), message());
      assert.equal(named.ok, false);
      assert.match(
        named.error ?? '',
        /^address (127\.0\.0\.1|::1) is not public \(TWIN_NOTIFY_PRIVATE=false\)$/,
      );
      assert.equal(named.permanent, true);
      const mapped = await guarded.send(loopback(`http://[::ffff:127.0.0.1]:${port}/ok`), message());
      assert.match(mapped.error ?? '', NOT_PUBLIC);
      assert.equal(connections, seenConnections);
      assert.equal(received.length, seenRequests);
    } finally {
      await guarded.close();
    }
  });

  it('delivers to a resolved name when private targets are allowed', async () => {
    const outcome = await notifier.send(loopback(`http://localhost:${port}/ok`), message());
    assert.equal(outcome.ok, true);
    assert.equal(received.at(-1)?.path, '/ok');
  });

  it('refuses bad receiverInfo as a permanent failure, sending nothing', async () => {
    const seen = received.length;
    const cases: Record<string, string>[] = [
      { 'x-bad': 'a\r\nInjected: 1' },
      { 'bad name': 'x' },
      { 'x-nul': 'a\u0000b' },
      { 'Content-Length': '1' },
      { 'x-wide': '浦江' },
    ];
    for (const headers of cases) {
      const outcome = await notifier.send(at('/ok'), message({ headers }));
      assert.equal(outcome.ok, false, JSON.stringify(headers));
      assert.equal(outcome.permanent, true);
      assert.match(outcome.error ?? '', /^receiverInfo /);
    }
    assert.equal(received.length, seen);
  });

  it('delivers 50 concurrent notifications to one receiver', async () => {
    const seen = received.length;
    const outcomes = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        notifier.send(at('/ok'), message({ body: JSON.stringify(notification(i)) })),
      ),
    );
    assert.ok(outcomes.every((o) => o.ok));
    const bodies = received.slice(seen).map((r) => (JSON.parse(r.body) as { id: string }).id);
    assert.equal(new Set(bodies).size, 50);
  });

  it('answers every send after close() with a failure', async () => {
    const closing = createNotifier({ timeoutMs: 2_000, allowPrivate: true });
    await closing.close();
    await closing.close();
    const outcome = await closing.send(at('/ok'), message());
    assert.equal(outcome.ok, false);
    assert.equal(outcome.error, 'notifier closed');
  });
});

// ---------------------------------------------------------------------------------------------

describe('MQTT delivery failures (fake brokers)', () => {
  const sockets = new Set<net.Socket>();
  // Accepts connections and never answers CONNECT.
  const silent = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  // Hangs up as soon as a client connects.
  const rude = net.createServer((s) => s.destroy());
  let silentPort = 0;
  let rudePort = 0;

  before(async () => {
    silent.listen(0, '127.0.0.1');
    rude.listen(0, '127.0.0.1');
    await Promise.all([once(silent, 'listening'), once(rude, 'listening')]);
    silentPort = (silent.address() as AddressInfo).port;
    rudePort = (rude.address() as AddressInfo).port;
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    silent.close();
    rude.close();
    await Promise.all([once(silent, 'close'), once(rude, 'close')]);
  });

  it('reports an unreachable broker as retryable, within the timeout', async () => {
    const notifier = createNotifier({ timeoutMs: 300, allowPrivate: true });
    try {
      const refused = await notifier.send(loopback(`mqtt://127.0.0.1:${await closedPort()}/t`), message());
      assert.equal(refused.ok, false);
      assert.equal(refused.error, 'connection refused (ECONNREFUSED)');
      assert.equal(refused.permanent, undefined);
      assert.ok(refused.durationMs < 300, `took ${refused.durationMs} ms`);

      const mute = await notifier.send(loopback(`mqtt://127.0.0.1:${silentPort}/t`), message());
      assert.equal(mute.ok, false);
      assert.equal(mute.error, 'timeout after 300 ms');
      assert.equal(mute.permanent, undefined);
      assert.ok(mute.durationMs >= 290 && mute.durationMs < 1_500, `took ${mute.durationMs} ms`);

      const hungUp = await notifier.send(loopback(`mqtt://127.0.0.1:${rudePort}/t`), message());
      assert.equal(hungUp.ok, false);
      assert.match(hungUp.error ?? '', /^connection closed/);
      assert.equal(hungUp.permanent, undefined);
    } finally {
      await notifier.close();
    }
  });

  it('refuses a loopback broker without connecting when private targets are not allowed', async () => {
    assertBad(() => parseEndpoint(`mqtt://127.0.0.1:${silentPort}/t`, { allowPrivate: false }), NOT_PUBLIC);
    const guarded = createNotifier({ timeoutMs: 300, allowPrivate: false });
    try {
      let connected = 0;
      const count = () => connected++;
      silent.on('connection', count);
      const literal = await guarded.send(loopback(`mqtt://127.0.0.1:${silentPort}/t`), message());
      assert.equal(literal.error, 'address 127.0.0.1 is not public (TWIN_NOTIFY_PRIVATE=false)');
      assert.equal(literal.permanent, true);
      const named = await guarded.send(loopback(`mqtt://localhost:${silentPort}/t`), message());
      assert.match(named.error ?? '', /^address (127\.0\.0\.1|::1) is not public/);
      assert.equal(named.permanent, true);
      silent.off('connection', count);
      assert.equal(connected, 0);
    } finally {
      await guarded.close();
    }
  });

  it('refuses a body that is not JSON and bad notifierInfo as permanent', async () => {
    const notifier = createNotifier({ timeoutMs: 300, allowPrivate: true });
    try {
      const endpoint = loopback(`mqtt://127.0.0.1:${silentPort}/t`);
      const notJson = await notifier.send(endpoint, message({ body: 'not json' }));
      assert.deepEqual([notJson.error, notJson.permanent], ['notification body is not JSON', true]);
      const badQos = await notifier.send(endpoint, message({ mqtt: { qos: 3 as 0 } }));
      assert.deepEqual([badQos.error, badQos.permanent], ['MQTT-QoS must be 0, 1 or 2', true]);
      const badHeader = await notifier.send(endpoint, message({ headers: { 'a b': 'x' } }));
      assert.equal(badHeader.permanent, true);
    } finally {
      await notifier.close();
    }
  });
});

const mqttUrl = readProcessEnv()['MQTT_URL'];

describe('MQTT delivery through a broker', { skip: mqttUrl ? false : 'MQTT_URL not set' }, () => {
  const topic = `pujiang-test/${randomBytes(6).toString('hex')}/notify`;
  const inbox: { payload: string; qos: number }[] = [];
  const waiting: (() => void)[] = [];
  let subscriber: MqttClient | undefined;
  const notifier = createNotifier({ timeoutMs: 2_000, allowPrivate: true });
  const endpoint = () => loopback(`${(mqttUrl ?? '').replace(/\/+$/, '')}/${topic}`);

  /** The next message on the test topic (in arrival order). */
  async function nextMessage(): Promise<{ payload: string; qos: number }> {
    const deadline = Date.now() + 2_000;
    while (inbox.length === 0) {
      if (Date.now() > deadline) throw new Error('no MQTT message within 2 s');
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    const first = inbox.shift();
    assert.ok(first);
    return first;
  }

  before(async () => {
    subscriber = await connectAsync(mqttUrl ?? '', { reconnectPeriod: 0 });
    subscriber.on('message', (_topic, payload, packet) => {
      inbox.push({ payload: payload.toString('utf8'), qos: packet.qos });
      for (const wake of waiting.splice(0)) wake();
    });
    await subscriber.subscribeAsync(topic, { qos: 2 });
  });
  after(async () => {
    await notifier.close();
    await subscriber?.endAsync();
  });

  const link =
    '<https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"';

  for (const [qos, version] of [
    [0, undefined],
    [1, 'mqtt3.1.1'],
    [1, 'mqtt5.0'],
    [2, 'mqtt3.1.1'],
  ] as const) {
    it(`publishes {metadata, body} with QoS ${qos} over ${version ?? 'the default version'}`, async () => {
      const body = notification(qos * 10 + (version === 'mqtt3.1.1' ? 1 : 5));
      const outcome = await notifier.send(
        endpoint(),
        message({
          body: JSON.stringify(body),
          headers: { Link: link, 'X-Tenant': 'city' },
          mqtt: version === undefined ? { qos } : { qos, version },
        }),
      );
      assert.equal(outcome.ok, true, outcome.error);
      const got = await nextMessage();
      assert.deepEqual(JSON.parse(got.payload), {
        metadata: { 'Content-Type': 'application/json', Link: link, 'X-Tenant': 'city' },
        body,
      });
    });
  }

  it('keeps Content-Type application/ld+json in the metadata', async () => {
    const body = notification(99);
    const outcome = await notifier.send(
      endpoint(),
      message({ body: JSON.stringify(body), contentType: 'application/ld+json', mqtt: { qos: 1 } }),
    );
    assert.equal(outcome.ok, true, outcome.error);
    const got = await nextMessage();
    assert.deepEqual(JSON.parse(got.payload), { metadata: { 'Content-Type': 'application/ld+json' }, body });
  });

  it('delivers concurrent sends over the shared broker connection', async () => {
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        notifier.send(
          endpoint(),
          message({ body: JSON.stringify(notification(1000 + i)), mqtt: { qos: 1 } }),
        ),
      ),
    );
    assert.ok(outcomes.every((o) => o.ok));
    const ids = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const got = JSON.parse((await nextMessage()).payload) as { body: { id: string } };
      ids.add(got.body.id);
    }
    assert.equal(ids.size, 20);
  });
});
