import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { NgsiError, type NgsiErrorType } from './errors.ts';
import {
  CORE_CONTEXT_DOCUMENT,
  CORE_CONTEXT_URL,
  CORE_LD_CONTEXT,
  contextForResponse,
  createContextResolver,
  hostedIdOf,
  isCoreContextUrl,
  JSONLD_CONTEXT_REL,
  linkHeaderFor,
  type LdContext,
  NGSI_LD_DEFAULT_VOCAB,
  parseLinkHeader,
  requestContextValue,
} from './ldcontext.ts';

const NGSI = 'https://uri.etsi.org/ngsi-ld/';
const DEFAULT = NGSI_LD_DEFAULT_VOCAB;

/** A fetch that fails the test if anything tries the network. */
const noFetch: typeof fetch = () => Promise.reject(new Error('no fetch expected'));

async function rejectsWith(p: Promise<unknown>, type: NgsiErrorType, detail?: RegExp): Promise<NgsiError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof NgsiError, `expected NgsiError, got ${String(e)}`);
    assert.equal(e.type, type, e.detail);
    if (detail !== undefined) assert.match(e.detail, detail);
    return e;
  }
  assert.fail(`expected ${type}`);
}

function throwsWith(fn: () => unknown, type: NgsiErrorType, detail?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof NgsiError, `expected NgsiError, got ${String(e)}`);
    assert.equal(e.type, type, e.detail);
    if (detail !== undefined) assert.match(e.detail, detail);
    return true;
  });
}

// ------------------------------------------------------------------------------------------------

describe('core context', () => {
  test('the bundled file is the v1.8 core context, byte for byte as published', () => {
    const bytes = readFileSync(new URL('./contexts/ngsi-ld-core-context-v1.8.json', import.meta.url));
    // Guards against reformatting: see contexts/README.md.
    assert.equal(
      createHash('sha256').update(bytes).digest('hex'),
      '4ac48e7d00cb0378546570ab0dbc46b3717da78ca4cb0fac98b0e32665046cca',
    );
    const ctx = CORE_CONTEXT_DOCUMENT['@context'] as Record<string, unknown>;
    for (const term of ['jsonKeys', 'LanguageProperty', 'VocabProperty', 'ListProperty', 'JsonProperty']) {
      assert.ok(term in ctx, term);
    }
    assert.equal(ctx['@vocab'], DEFAULT);
    assert.ok(Object.isFrozen(CORE_CONTEXT_DOCUMENT));
  });

  test('core terms, keywords and the default vocabulary expand and compact back', () => {
    const c = CORE_LD_CONTEXT;
    const cases: [string, string][] = [
      ['location', `${NGSI}location`],
      ['value', `${NGSI}hasValue`],
      ['object', `${NGSI}hasObject`],
      ['observedAt', `${NGSI}observedAt`],
      ['VocabProperty', `${NGSI}VocabProperty`],
      ['languageMap', `${NGSI}hasLanguageMap`],
      ['Point', 'https://purl.org/geojson/vocab#Point'],
      ['description', 'http://purl.org/dc/terms/description'],
      ['attributeCount', `${DEFAULT}attributeCount`],
      ['type', '@type'],
      ['id', '@id'],
      ['temperature', `${DEFAULT}temperature`],
      ['ngsi-ld:foo', `${NGSI}foo`],
    ];
    for (const [term, iri] of cases) {
      assert.equal(c.expand(term), iri, term);
      assert.equal(c.compact(iri), term, iri);
    }
    for (const iri of ['urn:ngsi-ld:Building:1', 'http://example.org/a', 'https://a.b/c#d', 'mailto:x@y.z']) {
      assert.equal(c.expand(iri), iri);
      assert.equal(c.compact(iri), iri);
    }
    assert.equal(c.definition('createdAt')?.type, `${NGSI}DateTime`);
    assert.equal(c.definition('object')?.type, '@id');
    assert.deepEqual(c.definition('valueList')?.container, ['@list']);
    assert.equal(c.definition('temperature'), undefined);
    assert.equal(c.vocab, DEFAULT);
    assert.ok(c.isCoreOnly);
    assert.deepEqual(c.sources, []);
    assert.equal(contextForResponse(c), CORE_CONTEXT_URL);
  });

  test('expand and compact are bound functions', () => {
    const { expand, compact } = CORE_LD_CONTEXT;
    assert.equal(expand('location'), `${NGSI}location`);
    assert.equal(compact(`${NGSI}location`), 'location');
  });

  test('undefined, null and every core context URL resolve to the shared singleton without fetching', async () => {
    const r = createContextResolver({ fetch: noFetch });
    for (const v of [
      undefined,
      null,
      CORE_CONTEXT_URL,
      'https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld',
      'https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.3.jsonld',
      'https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld',
      [CORE_CONTEXT_URL],
    ]) {
      assert.equal(await r.resolve(v), CORE_LD_CONTEXT, JSON.stringify(v));
    }
    assert.ok(isCoreContextUrl('https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.0.jsonld'));
    assert.ok(!isCoreContextUrl('https://uri.etsi.org/ngsi-ld/v1/other.jsonld'));
    assert.deepEqual(r.cached(), []);
  });
});

// ------------------------------------------------------------------------------------------------

describe('user contexts', () => {
  const r = createContextResolver({ fetch: noFetch });

  test('prefixes and object term definitions, in any order', async () => {
    const ctx = await r.resolve({
      name: 'schema:name',
      schema: 'https://schema.org/',
      temp: { '@id': 'ex:temperature', '@type': '@id' },
      ex: 'http://example.org/',
      when: { '@id': 'ex:when', '@type': 'DateTime' },
      implicit: { '@type': '@vocab' },
    });
    assert.equal(ctx.expand('name'), 'https://schema.org/name');
    assert.equal(ctx.expand('temp'), 'http://example.org/temperature');
    assert.equal(ctx.expand('schema:address'), 'https://schema.org/address');
    assert.equal(ctx.expand('implicit'), `${DEFAULT}implicit`);
    assert.equal(ctx.definition('temp')?.type, '@id');
    assert.equal(ctx.definition('when')?.type, `${NGSI}DateTime`);
    assert.equal(ctx.compact('https://schema.org/name'), 'name');
    assert.equal(ctx.compact('http://example.org/temperature'), 'temp');
    assert.equal(ctx.compact('https://schema.org/address'), 'schema:address');
    assert.equal(ctx.compact('http://example.org/other'), 'ex:other');
    assert.equal(ctx.compact(`${DEFAULT}speed`), 'speed');
    assert.ok(!ctx.isCoreOnly);
    assert.equal(ctx.expand('location'), `${NGSI}location`);
  });

  test('a prefix needs a gen-delim IRI or @prefix (JSON-LD 1.1)', async () => {
    const ctx = await r.resolve({
      ex: 'http://example.org/ns',
      exp: { '@id': 'http://example.org/p', '@prefix': true },
    });
    assert.equal(ctx.expand('ex:a'), 'ex:a'); // not a prefix: an absolute IRI with scheme "ex"
    assert.equal(ctx.expand('exp:a'), 'http://example.org/pa');
  });

  test('a user @vocab applies to names no term defines; core terms stay', async () => {
    const ctx = await r.resolve({ '@vocab': 'https://example.org/vocab/' });
    assert.equal(ctx.vocab, 'https://example.org/vocab/');
    assert.equal(ctx.expand('speed'), 'https://example.org/vocab/speed');
    assert.equal(ctx.expand('location'), `${NGSI}location`);
    assert.equal(ctx.compact('https://example.org/vocab/speed'), 'speed');
    assert.equal(ctx.compact(`${DEFAULT}speed`), 'ngsi-ld:default-context/speed');
  });

  test('core terms cannot be overridden; core terms win compaction of core IRIs', async () => {
    const ctx = await r.resolve({
      location: 'https://evil.example/location',
      value: 'https://evil.example/value',
      type: 'https://evil.example/type',
      myLocation: `${NGSI}location`,
      kind: '@type',
    });
    assert.equal(ctx.expand('location'), `${NGSI}location`);
    assert.equal(ctx.expand('value'), `${NGSI}hasValue`);
    assert.equal(ctx.expand('type'), '@type');
    assert.equal(ctx.expand('myLocation'), `${NGSI}location`);
    assert.equal(ctx.expand('kind'), '@type');
    assert.equal(ctx.compact(`${NGSI}location`), 'location');
    assert.equal(ctx.compact('@type'), 'type');
    assert.equal(ctx.compact('https://evil.example/location'), 'https://evil.example/location');
  });

  test('compaction: the last user context wins, then the shortest term, then the least', async () => {
    const a = await r.resolve([{ t: 'http://x/t' }, { later: 'http://x/t' }]);
    assert.equal(a.compact('http://x/t'), 'later');
    const b = await r.resolve({ zz: 'http://x/u', aa: 'http://x/u', abc: 'http://x/u', b: 'http://x/v' });
    assert.equal(b.compact('http://x/u'), 'aa');
    // A redefined term no longer compacts its old IRI.
    const c = await r.resolve([{ t: 'http://x/old' }, { t: 'http://x/new' }]);
    assert.equal(c.compact('http://x/old'), 'http://x/old');
    assert.equal(c.compact('http://x/new'), 't');
  });

  test('null in an array resets earlier user definitions; a null term undefines it', async () => {
    const ctx = await r.resolve([{ a: 'http://x/a', '@vocab': 'http://v/' }, null, { b: 'http://x/b' }]);
    assert.equal(ctx.expand('a'), `${DEFAULT}a`);
    assert.equal(ctx.expand('b'), 'http://x/b');
    assert.equal(ctx.vocab, DEFAULT);
    const undef = await r.resolve([{ a: 'http://x/a' }, { a: null }]);
    assert.equal(undef.expand('a'), `${DEFAULT}a`);
  });

  test('keywords we do not honour are accepted; @reverse terms are ignored', async () => {
    const ctx = await r.resolve({
      '@version': 1.1,
      '@protected': true,
      '@propagate': false,
      '@language': 'en',
      '@base': 'http://base/',
      parent: { '@reverse': 'http://x/child' },
      tags: { '@id': 'http://x/tags', '@container': ['@set', '@index'], '@protected': true, '@context': {} },
    });
    assert.equal(ctx.expand('parent'), `${DEFAULT}parent`);
    assert.equal(ctx.expand('tags'), 'http://x/tags');
    assert.deepEqual(ctx.definition('tags')?.container, ['@set', '@index']);
  });

  test('sources are kept as given (frozen copies), keys are stable and content-addressed', async () => {
    const inline = { t: 'http://x/t' };
    const ctx = await r.resolve([inline, CORE_CONTEXT_URL]);
    assert.deepEqual(ctx.sources, [{ t: 'http://x/t' }]);
    assert.ok(Object.isFrozen(ctx.sources[0]));
    assert.deepEqual(contextForResponse(ctx), [{ t: 'http://x/t' }, CORE_CONTEXT_URL]);
    const other = createContextResolver({ fetch: noFetch });
    assert.equal((await other.resolve([{ t: 'http://x/t' }])).key, ctx.key);
    assert.notEqual((await other.resolve({ t: 'http://x/T' })).key, ctx.key);
    assert.notEqual(ctx.key, CORE_LD_CONTEXT.key);
    // Equal values in another key order are one cache entry.
    const p = await r.resolve({ a: 'http://x/a', b: 'http://x/b' });
    assert.equal(await r.resolve({ b: 'http://x/b', a: 'http://x/a' }), p);
  });

  test('a wrapped {"@context": …} document given inline is unwrapped', async () => {
    const ctx = await r.resolve({ '@context': { t: 'http://x/t' } });
    assert.equal(ctx.expand('t'), 'http://x/t');
  });

  test('malformed contexts are InvalidRequest with a precise detail', async () => {
    const cases: [unknown, RegExp][] = [
      [42, /not a number/],
      [true, /not a boolean/],
      [[42], /not a number/],
      [[[{}]], /arrays must not be nested/],
      [
        { temperature: 42 },
        /term "temperature" must be defined by a string, an object or null, not a number/,
      ],
      [{ temperature: ['x'] }, /term "temperature" .* not an array/],
      [{ temperature: { '@id': 5 } }, /"@id" of term "temperature" must be a string/],
      [{ temperature: { '@type': 5 } }, /"@type" of term "temperature" must be a string/],
      [{ temperature: { '@container': 5 } }, /"@container" of term "temperature"/],
      [{ temperature: { '@prefix': 'yes' } }, /"@prefix" of term "temperature" must be a boolean/],
      [{ '@vocab': 5 }, /"@vocab" must be a string or null/],
      [{ '@version': 2 }, /"@version" must be the number 1.1/],
      [{ '@protected': 'yes' }, /"@protected" must be a boolean/],
      [{ '': 'http://x/' }, /empty string/],
      [{ a: 'b:x', b: 'a:y' }, /cyclic IRI mapping/],
      ['ctx.jsonld', /"ctx.jsonld" is not an absolute URL/],
      [{ '@import': 5 }, /"@import" must be a URL string/],
    ];
    for (const [value, detail] of cases) await rejectsWith(r.resolve(value), 'InvalidRequest', detail);
  });

  test('expand(compact(iri)) === iri for many IRIs (property-based)', async () => {
    const contexts: LdContext[] = [
      CORE_LD_CONTEXT,
      await r.resolve([
        {
          sdm: 'https://smartdatamodels.org/',
          temperature: 'https://smartdatamodels.org/dataModel.Environment/temperature',
          schema: 'https://schema.org/',
          ex: 'http://example.org/',
          exNs: 'http://example.org/ns#',
          short: 'http://example.org/s',
          colon: 'http://example.org/a:',
        },
        { '@vocab': 'http://example.org/vocab/', dup: 'http://example.org/x', du: 'http://example.org/x' },
      ]),
    ];
    let seed = 0x2f6b3c1d;
    const rand = (n: number): number => {
      // mulberry32: deterministic, so a failure reproduces.
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) % n;
    };
    const roots = [
      NGSI,
      DEFAULT,
      'https://purl.org/geojson/vocab#',
      'https://smartdatamodels.org/',
      'https://smartdatamodels.org/dataModel.Environment/',
      'https://schema.org/',
      'http://example.org/',
      'http://example.org/ns#',
      'http://example.org/vocab/',
      'http://example.org/a:',
      'urn:ngsi-ld:',
      'https://other.example/deep/path/',
    ];
    const chars = 'abcXYZ019-_./#:@';
    let checked = 0;
    for (const ctx of contexts) {
      for (let i = 0; i < 5000; i++) {
        let suffix = '';
        const len = rand(14);
        for (let j = 0; j < len; j++) suffix += chars[rand(chars.length)] ?? '';
        const iri = `${roots[rand(roots.length)] ?? ''}${suffix}`;
        assert.equal(ctx.expand(ctx.compact(iri)), iri, `${iri} → ${ctx.compact(iri)}`);
        checked++;
      }
      for (const term of ['location', 'temperature', 'sdm', 'dup', 'du', 'value', 'type']) {
        const iri = ctx.expand(term);
        assert.equal(ctx.expand(ctx.compact(iri)), iri);
      }
    }
    assert.equal(checked, 10_000);
  });

  test('memoisation: 1e6 expand calls on a resolved context cost tens of ns each', async (t) => {
    const ctx = await r.resolve({
      temperature: 'https://smartdatamodels.org/temperature',
      sdm: 'https://sdm/',
    });
    const names = [
      'temperature',
      'location',
      'humidity',
      'sdm:x',
      'observedAt',
      'unknownAttr',
      'value',
      'name',
    ];
    let sink = 0;
    for (let i = 0; i < 100_000; i++) sink += ctx.expand(names[i & 7] ?? '').length;
    const n = 1_000_000;
    const started = process.hrtime.bigint();
    for (let i = 0; i < n; i++) sink += ctx.expand(names[i & 7] ?? '').length;
    const ns = Number(process.hrtime.bigint() - started) / n;
    t.diagnostic(`expand: ${ns.toFixed(1)} ns/call over ${n} calls (checksum ${sink})`);
    // Generous bound: shared CI machines vary; the point is "a Map lookup", not a JSON-LD processor.
    assert.ok(ns < 1000, `${ns} ns per expand`);
    // Many distinct unknown names stay correct (the memo is bounded and starts over).
    for (let i = 0; i < 25_000; i++) assert.equal(ctx.expand(`a${i}`), `${DEFAULT}a${i}`);
    assert.equal(ctx.expand('temperature'), 'https://smartdatamodels.org/temperature');
  });
});

// ------------------------------------------------------------------------------------------------

interface TestServer {
  base: string;
  hits: Map<string, number>;
  close(): Promise<void>;
}

async function startServer(handler: http.RequestListener): Promise<TestServer> {
  const hits = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const path = req.url ?? '/';
    hits.set(path, (hits.get(path) ?? 0) + 1);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}

const SDM = {
  '@context': {
    temperature: 'https://smartdatamodels.org/dataModel.Environment/temperature',
    humidity: 'https://smartdatamodels.org/dataModel.Environment/humidity',
    WeatherObserved: 'https://smartdatamodels.org/dataModel.Weather/WeatherObserved',
  },
};

describe('remote contexts', () => {
  let srv: TestServer;
  const state = { versioned: 'v1', flaky: 500, versionedStatus: 200 };

  before(async () => {
    srv = await startServer((req, res) => {
      const path = req.url ?? '/';
      const json = (body: unknown, status = 200): void => {
        res.writeHead(status, { 'content-type': 'application/ld+json' });
        res.end(JSON.stringify(body));
      };
      const deep = /^\/deep\/(\d+)$/.exec(path);
      const redirects = /^\/redirects\/(\d+)$/.exec(path);
      if (path === '/sdm.jsonld' || path === '/sdm2.jsonld' || path === '/sdm3.jsonld') json(SDM);
      else if (path === '/nested.jsonld') json({ '@context': ['/sdm.jsonld', { extra: 'http://x/extra' }] });
      else if (path === '/import.jsonld') {
        json({ '@context': { '@import': '/sdm.jsonld', temperature: 'http://override/temperature' } });
      } else if (path === '/import-array.jsonld') json({ '@context': { '@import': '/nested.jsonld' } });
      else if (path === '/loop-a.jsonld') json({ '@context': '/loop-b.jsonld' });
      else if (path === '/loop-b.jsonld') json({ '@context': [{ b: 'http://x/b' }, '/loop-a.jsonld'] });
      else if (deep !== null) {
        const n = Number(deep[1]);
        json({ '@context': n >= 8 ? { deepest: 'http://x/deepest' } : `/deep/${n + 1}` });
      } else if (redirects !== null) {
        const n = Number(redirects[1]);
        if (n === 0) json(SDM);
        else {
          res.writeHead(302, { location: `/redirects/${n - 1}` });
          res.end();
        }
      } else if (path === '/redirect-loop/a' || path === '/redirect-loop/b') {
        res.writeHead(307, { location: path.endsWith('a') ? '/redirect-loop/b' : '/redirect-loop/a' });
        res.end();
      } else if (path === '/not-json') {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html>hello</html>');
      } else if (path === '/no-context') json({ temperature: 'http://x/t' });
      else if (path === '/array-doc') json([SDM]);
      else if (path === '/slow') {
        // Accepts the request and never answers.
      } else if (path === '/slow-body') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"@context": {');
      } else if (path === '/big-declared') {
        // Claims 10 MB, sends a few bytes, then stalls: the header alone must refuse it.
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(10_000_000) });
        res.write('{"@context": {');
      } else if (path === '/big-chunked') {
        // No Content-Length; 128 KiB, then the stream stays open.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write(`{"@context": {"a": "${'x'.repeat(128 * 1024)}`);
      } else if (path === '/versioned') {
        if (state.versionedStatus !== 200) {
          res.writeHead(state.versionedStatus);
          res.end();
        } else json({ '@context': { t: `http://${state.versioned}/t` } });
      } else if (path === '/flaky') {
        if (state.flaky === 200) json(SDM);
        else {
          res.writeHead(state.flaky);
          res.end('down');
        }
      } else {
        res.writeHead(404);
        res.end('not found');
      }
    });
  });
  after(async () => {
    await srv.close();
  });

  const resolver = (extra: Parameters<typeof createContextResolver>[0] = {}) =>
    createContextResolver({ timeoutMs: 400, maxBytes: 64 * 1024, ...extra });

  test('a Smart-Data-Models-like context from a URL', async () => {
    const r = resolver();
    const ctx = await r.resolve(`${srv.base}/sdm.jsonld`);
    assert.equal(ctx.expand('temperature'), 'https://smartdatamodels.org/dataModel.Environment/temperature');
    assert.equal(
      ctx.expand('WeatherObserved'),
      'https://smartdatamodels.org/dataModel.Weather/WeatherObserved',
    );
    assert.equal(ctx.compact('https://smartdatamodels.org/dataModel.Environment/humidity'), 'humidity');
    assert.equal(ctx.expand('location'), `${NGSI}location`);
    assert.deepEqual(ctx.sources, [`${srv.base}/sdm.jsonld`]);
    assert.deepEqual(r.cachedDocument(`${srv.base}/sdm.jsonld`), SDM);
  });

  test('nested and @import-ed URLs, relative to the document that names them', async () => {
    const r = resolver();
    const nested = await r.resolve(`${srv.base}/nested.jsonld`);
    assert.equal(
      nested.expand('temperature'),
      'https://smartdatamodels.org/dataModel.Environment/temperature',
    );
    assert.equal(nested.expand('extra'), 'http://x/extra');
    const imported = await r.resolve(`${srv.base}/import.jsonld`);
    assert.equal(imported.expand('humidity'), 'https://smartdatamodels.org/dataModel.Environment/humidity');
    assert.equal(imported.expand('temperature'), 'http://override/temperature');
    await rejectsWith(
      r.resolve(`${srv.base}/import-array.jsonld`),
      'InvalidRequest',
      /single context object/,
    );
    // Mixed array: URL, inline, core URL.
    const mixed = await r.resolve([`${srv.base}/sdm.jsonld`, { extra: 'http://x/e' }, CORE_CONTEXT_URL]);
    assert.equal(mixed.expand('extra'), 'http://x/e');
    assert.equal(mixed.expand('humidity'), 'https://smartdatamodels.org/dataModel.Environment/humidity');
  });

  test('loops and nesting deeper than 8 URLs are InvalidRequest', async () => {
    const r = resolver();
    await rejectsWith(
      r.resolve(`${srv.base}/loop-a.jsonld`),
      'InvalidRequest',
      /loop: .*loop-a.*loop-b.*loop-a/,
    );
    const ok = await r.resolve(`${srv.base}/deep/1`); // 8 URLs
    assert.equal(ok.expand('deepest'), 'http://x/deepest');
    await rejectsWith(r.resolve(`${srv.base}/deep/0`), 'InvalidRequest', /deeper than 8/); // 9 URLs
  });

  test('50 concurrent resolves of one URL make one fetch, and so do 50 contexts sharing it', async () => {
    const r = resolver();
    const url = `${srv.base}/sdm2.jsonld`;
    const ctxs = await Promise.all(Array.from({ length: 50 }, () => r.resolve(url)));
    assert.equal(srv.hits.get('/sdm2.jsonld'), 1);
    assert.ok(ctxs.every((c) => c === ctxs[0]));
    const url3 = `${srv.base}/sdm3.jsonld`;
    const mixed = await Promise.all(
      Array.from({ length: 50 }, (_, i) => r.resolve([url3, { [`t${i}`]: 'http://x/' }])),
    );
    assert.equal(srv.hits.get('/sdm3.jsonld'), 1);
    assert.equal(new Set(mixed.map((c) => c.key)).size, 50);
    // Later requests are cache hits.
    assert.equal(await r.resolve(url), ctxs[0]);
    assert.equal(srv.hits.get('/sdm2.jsonld'), 1);
    const info = r.cached().find((c) => c.url === url);
    assert.equal(info?.kind, 'Cached');
    assert.equal(info.numberOfHits, 51);
    assert.ok(info.extraInfo.bytes > 0);
  });

  test('a server that never answers fails within the timeout', async () => {
    const r = resolver({ timeoutMs: 300 });
    for (const path of ['/slow', '/slow-body']) {
      const started = Date.now();
      await rejectsWith(r.resolve(`${srv.base}${path}`), 'LdContextNotAvailable', /within 300 ms/);
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 250 && elapsed < 300 + 700, `${path}: ${elapsed} ms`);
    }
  });

  test('HTTP errors, refused connections, non-JSON and documents without @context', async () => {
    const r = resolver();
    await rejectsWith(
      r.resolve(`${srv.base}/missing.jsonld`),
      'LdContextNotAvailable',
      /missing\.jsonld: HTTP 404/,
    );
    await rejectsWith(r.resolve(`${srv.base}/not-json`), 'LdContextNotAvailable', /not a JSON document/);
    await rejectsWith(r.resolve(`${srv.base}/no-context`), 'LdContextNotAvailable', /no @context/);
    await rejectsWith(r.resolve(`${srv.base}/array-doc`), 'LdContextNotAvailable', /no @context/);
    await rejectsWith(
      r.resolve('ftp://127.0.0.1/ctx.jsonld'),
      'LdContextNotAvailable',
      /only http and https/,
    );
    // A port nobody listens on: bind one, close it.
    const dead = await startServer(() => undefined);
    await dead.close();
    const started = Date.now();
    await rejectsWith(
      r.resolve(`${dead.base}/ctx.jsonld`),
      'LdContextNotAvailable',
      /connection failed \(ECONNREFUSED\)/,
    );
    assert.ok(Date.now() - started < 400);
    assert.deepEqual(r.cached(), []);
  });

  test('too large: a Content-Length over the limit refuses at once; a chunked body is cut', async () => {
    const r = resolver({ timeoutMs: 2000 });
    let started = Date.now();
    await rejectsWith(
      r.resolve(`${srv.base}/big-declared`),
      'LdContextNotAvailable',
      /larger than 65536 bytes \(Content-Length 10000000\)/,
    );
    assert.ok(Date.now() - started < 1000);
    started = Date.now();
    await rejectsWith(
      r.resolve(`${srv.base}/big-chunked`),
      'LdContextNotAvailable',
      /larger than 65536 bytes$/,
    );
    assert.ok(Date.now() - started < 1000);
  });

  test('redirects are followed up to 5; a redirect loop fails quickly', async () => {
    const r = resolver();
    const ctx = await r.resolve(`${srv.base}/redirects/5`);
    assert.equal(ctx.expand('humidity'), 'https://smartdatamodels.org/dataModel.Environment/humidity');
    await rejectsWith(r.resolve(`${srv.base}/redirects/6`), 'LdContextNotAvailable', /more than 5 redirects/);
    await rejectsWith(
      r.resolve(`${srv.base}/redirect-loop/a`),
      'LdContextNotAvailable',
      /more than 5 redirects/,
    );
  });

  test('failures are remembered briefly, then retried', async () => {
    const r = resolver({ negativeTtlMs: 150 });
    const url = `${srv.base}/flaky`;
    state.flaky = 503;
    await rejectsWith(r.resolve(url), 'LdContextNotAvailable', /HTTP 503/);
    await rejectsWith(r.resolve(url), 'LdContextNotAvailable', /HTTP 503/);
    assert.equal(srv.hits.get('/flaky'), 1);
    state.flaky = 200;
    await rejectsWith(r.resolve(url), 'LdContextNotAvailable'); // still remembered
    await new Promise((resolve) => setTimeout(resolve, 200));
    const ctx = await r.resolve(url);
    assert.equal(ctx.expand('humidity'), 'https://smartdatamodels.org/dataModel.Environment/humidity');
    assert.equal(srv.hits.get('/flaky'), 2);
  });

  test('cached copies expire after the TTL; a failed refresh keeps serving the stale copy', async () => {
    let clock = Date.parse('2025-01-01T00:00:00Z');
    const r = resolver({ cacheTtlMs: 1000, now: () => clock });
    const url = `${srv.base}/versioned`;
    const before = srv.hits.get('/versioned') ?? 0;
    state.versioned = 'v1';
    assert.equal((await r.resolve(url)).expand('t'), 'http://v1/t');
    clock += 500;
    state.versioned = 'v2';
    assert.equal((await r.resolve(url)).expand('t'), 'http://v1/t');
    assert.equal(srv.hits.get('/versioned'), before + 1);
    clock += 1000;
    assert.equal((await r.resolve(url)).expand('t'), 'http://v2/t');
    assert.equal(srv.hits.get('/versioned'), before + 2);
    clock += 2000;
    state.versionedStatus = 500;
    assert.equal((await r.resolve(url)).expand('t'), 'http://v2/t');
    state.versionedStatus = 200;
    const [info] = r.cached();
    assert.equal(info?.createdAt, '2025-01-01T00:00:01.500Z');
    assert.equal(info.lastUsage, '2025-01-01T00:00:03.500Z');
  });

  test('reload, evict and invalidate', async () => {
    const r = resolver();
    const url = `${srv.base}/versioned`;
    state.versioned = 'r1';
    assert.equal((await r.resolve(url)).expand('t'), 'http://r1/t');
    state.versioned = 'r2';
    assert.equal((await r.resolve(url)).expand('t'), 'http://r1/t');
    await r.reload(url);
    assert.equal((await r.resolve(url)).expand('t'), 'http://r2/t');
    // A failing reload keeps the old copy.
    state.versionedStatus = 500;
    await rejectsWith(r.reload(url), 'LdContextNotAvailable', /HTTP 500/);
    state.versionedStatus = 200;
    assert.deepEqual(r.cachedDocument(url), { '@context': { t: 'http://r2/t' } });
    assert.equal((await r.resolve(url)).expand('t'), 'http://r2/t');
    state.versioned = 'r3';
    assert.equal(r.evict(url), true);
    assert.equal(r.evict(url), false);
    assert.deepEqual(r.cached(), []);
    assert.equal((await r.resolve(url)).expand('t'), 'http://r3/t');
    state.versioned = 'r4';
    await r.reload(url);
    r.invalidate();
    assert.equal((await r.resolve(url)).expand('t'), 'http://r4/t');
  });

  test('the resolved-context cache is bounded', async () => {
    const r = resolver({ maxEntries: 3, fetch: noFetch });
    const first = await r.resolve({ a: 'http://x/0' });
    for (let i = 1; i < 6; i++) await r.resolve({ a: `http://x/${i}` });
    const again = await r.resolve({ a: 'http://x/0' });
    assert.notEqual(again, first); // evicted and rebuilt
    assert.equal(again.key, first.key);
  });
});

// ------------------------------------------------------------------------------------------------

describe('hosted contexts', () => {
  test('hosted URLs (any host) are served from the store without HTTP, and can be invalidated', async () => {
    const store = new Map<string, object>([['abc', { '@context': { h: 'http://hosted/h1' } }]]);
    const r = createContextResolver({
      fetch: noFetch,
      hosted: { get: (id) => Promise.resolve(store.get(id)) },
    });
    const url = 'http://broker.example:1026/ngsi-ld/v1/jsonldContexts/abc';
    assert.equal((await r.resolve(url)).expand('h'), 'http://hosted/h1');
    store.set('abc', { h: 'http://hosted/h2' }); // a bare context object is accepted too
    assert.equal((await r.resolve(url)).expand('h'), 'http://hosted/h1');
    r.invalidate('http://localhost/ngsi-ld/v1/jsonldContexts/abc');
    assert.equal((await r.resolve(url)).expand('h'), 'http://hosted/h2');
    await rejectsWith(
      r.resolve('http://broker.example/ngsi-ld/v1/jsonldContexts/nope'),
      'LdContextNotAvailable',
      /no hosted @context with id "nope"/,
    );
    assert.deepEqual(r.cached(), []);
  });

  test('hostedIdOf', () => {
    assert.equal(hostedIdOf('http://a/ngsi-ld/v1/jsonldContexts/abc'), 'abc');
    assert.equal(hostedIdOf('https://a:8443/ngsi-ld/v1/jsonldContexts/urn%3Angsi-ld%3Ax'), 'urn:ngsi-ld:x');
    assert.equal(hostedIdOf('http://a/ngsi-ld/v1/jsonldContexts/'), undefined);
    assert.equal(hostedIdOf('http://a/ngsi-ld/v1/jsonldContexts/a/b'), undefined);
    assert.equal(hostedIdOf('http://a/other/abc'), undefined);
    assert.equal(hostedIdOf('not a url'), undefined);
  });
});

// ------------------------------------------------------------------------------------------------

describe('Link header', () => {
  const u = 'https://example.org/ctx.jsonld';

  test('finds the JSON-LD context link, rel quoted or not, type optional', () => {
    assert.equal(parseLinkHeader(linkHeaderFor(u)), u);
    assert.equal(linkHeaderFor(u), `<${u}>; rel="${JSONLD_CONTEXT_REL}"; type="application/ld+json"`);
    assert.equal(parseLinkHeader(`<${u}>; rel=${JSONLD_CONTEXT_REL}`), u);
    assert.equal(parseLinkHeader(`<${u}>;rel="${JSONLD_CONTEXT_REL}";type="application/ld+json"`), u);
    assert.equal(parseLinkHeader(`<${u}>; REL="alternate ${JSONLD_CONTEXT_REL}"`), u);
    assert.equal(parseLinkHeader(`<https://x/next>; rel="next", <${u}>; rel="${JSONLD_CONTEXT_REL}"`), u);
    assert.equal(parseLinkHeader([`<https://x/next>; rel="next"`, linkHeaderFor(u)]), u);
    assert.equal(parseLinkHeader(`<https://x/next>; rel="next"`), undefined);
    assert.equal(parseLinkHeader(''), undefined);
    assert.equal(parseLinkHeader(undefined), undefined);
  });

  test('two context links or garbage are BadRequestData', () => {
    throwsWith(
      () => parseLinkHeader(`${linkHeaderFor(u)}, ${linkHeaderFor('https://b/c')}`),
      'BadRequestData',
      /more than one/,
    );
    throwsWith(
      () => parseLinkHeader([linkHeaderFor(u), linkHeaderFor(u)]),
      'BadRequestData',
      /more than one/,
    );
    for (const garbage of [
      'garbage',
      `<${u}`,
      `<${u}>; rel="${JSONLD_CONTEXT_REL}`,
      `<${u}>; =x`,
      `<${u}> rel="x"`,
      `<${u}>; rel=`,
    ]) {
      throwsWith(() => parseLinkHeader(garbage), 'BadRequestData', /malformed Link header/);
    }
    throwsWith(
      () => parseLinkHeader(`<ctx.jsonld>; rel="${JSONLD_CONTEXT_REL}"`),
      'BadRequestData',
      /not an absolute URL/,
    );
  });
});

describe('requestContextValue', () => {
  const link = linkHeaderFor('https://example.org/ctx.jsonld');
  const ctxUrl = 'https://example.org/ctx.jsonld';

  test('GET and DELETE use the Link header', () => {
    assert.equal(requestContextValue({ method: 'GET', linkHeader: link }), ctxUrl);
    assert.equal(requestContextValue({ method: 'delete', linkHeader: link }), ctxUrl);
    assert.equal(requestContextValue({ method: 'GET' }), undefined);
  });

  test('application/json: Link header only; a body @context is refused', () => {
    const body = { id: 'urn:x', type: 'T' };
    assert.equal(
      requestContextValue({ method: 'POST', contentType: 'application/json', linkHeader: link, body }),
      ctxUrl,
    );
    assert.equal(
      requestContextValue({ method: 'PATCH', contentType: 'application/merge-patch+json', body }),
      undefined,
    );
    throwsWith(
      () =>
        requestContextValue({
          method: 'POST',
          contentType: 'application/json',
          body: { ...body, '@context': ctxUrl },
        }),
      'BadRequestData',
      /must not carry @context/,
    );
  });

  test('application/ld+json: the body @context, required, and no context Link header', () => {
    const body = { id: 'urn:x', type: 'T', '@context': [ctxUrl, { a: 'http://x/a' }] };
    assert.deepEqual(
      requestContextValue({ method: 'POST', contentType: 'application/ld+json; charset=utf-8', body }),
      body['@context'],
    );
    throwsWith(
      () =>
        requestContextValue({ method: 'POST', contentType: 'application/ld+json', body: { id: 'urn:x' } }),
      'BadRequestData',
      /must carry @context/,
    );
    throwsWith(
      () =>
        requestContextValue({ method: 'POST', contentType: 'application/ld+json', linkHeader: link, body }),
      'BadRequestData',
      /not in a Link header/,
    );
    // Other Link relations are fine.
    assert.deepEqual(
      requestContextValue({
        method: 'POST',
        contentType: 'application/ld+json',
        linkHeader: '<https://x/next>; rel="next"',
        body,
      }),
      body['@context'],
    );
  });

  test('batch arrays: one context value per element', () => {
    assert.deepEqual(
      requestContextValue({
        method: 'POST',
        contentType: 'application/json',
        linkHeader: link,
        body: [{}, {}],
      }),
      [ctxUrl, ctxUrl],
    );
    assert.deepEqual(
      requestContextValue({
        method: 'POST',
        contentType: 'application/ld+json',
        body: [{ '@context': ctxUrl }, { '@context': { a: 'http://x/a' } }],
      }),
      [ctxUrl, { a: 'http://x/a' }],
    );
    throwsWith(
      () =>
        requestContextValue({
          method: 'POST',
          contentType: 'application/ld+json',
          body: [{ '@context': ctxUrl }, {}],
        }),
      'BadRequestData',
      /element 1/,
    );
    throwsWith(
      () =>
        requestContextValue({
          method: 'POST',
          contentType: 'application/json',
          body: [{}, { '@context': ctxUrl }],
        }),
      'BadRequestData',
      /element 1/,
    );
  });
});
