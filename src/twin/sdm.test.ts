/**
 * Acceptance over HTTP with real-world entities from the FIWARE Smart Data Models programme
 * (test/fixtures/sdm, see SOURCES.md there), on every engine of this run: normalized and keyValues
 * examples round-trip unchanged under their own domain @context, their terms expand to the IRIs the
 * domain contexts give them, type and q queries find them, batches create them, and the invalid
 * derivatives (and the programme's own broken examples) are refused without writing anything.
 * The domain contexts are served from a loopback HTTP server; the core context is bundled.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { engines, type TestDatabase } from '../../test/helpers/engines.ts';
import { startTestPlatform } from '../../test/helpers/platform.ts';
import type { Platform } from '../platform.ts';

const SDM = new URL('../../test/fixtures/sdm/', import.meta.url);
const CORE_V18 = 'https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld';
const CORE_URL = /^https:\/\/uri\.etsi\.org\/ngsi-ld\/v1\/ngsi-ld-core-context[^/]*\.jsonld$/;
const DEFAULT_VOCAB = 'https://uri.etsi.org/ngsi-ld/default-context/';
const ERR = 'https://uri.etsi.org/ngsi-ld/errors/';
const LD_CT = { 'content-type': 'application/ld+json' };
const JSON_CT = { 'content-type': 'application/json' };
const LD_ACCEPT = { accept: 'application/ld+json' };
/** Entity-level system attributes (§4.8): the broker generates them, so they are not compared. */
const SYSTEM_ATTRS = ['createdAt', 'modifiedAt', 'deletedAt'];
/**
 * `ParkingSpot.keyvalues.jsonld` names the retired `https://schema.lab.fiware.org/ld/context`
 * (113 KB, not stored in the fixtures). A minimal stand-in serves in its place: the example's
 * non-core terms mapped into the FIWARE data-models namespace, as the retired context did.
 */
const RETIRED_FIWARE_CONTEXT = 'https://schema.lab.fiware.org/ld/context';
const RETIRED_STAND_IN = {
  '@context': Object.fromEntries(
    ['ParkingSpot', 'category', 'name', 'refParkingSite'].map((t) => [
      t,
      `https://uri.fiware.org/ns/data-models#${t}`,
    ]),
  ),
};

type Json = Record<string, unknown>;

interface Res {
  statusCode: number;
  headers: Record<string, unknown>;
  body: string;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the shape it expects
  json<T>(): T;
}

const readJson = (path: string): Json => JSON.parse(readFileSync(new URL(path, SDM), 'utf8')) as Json;

/** Original context URL → fixture file, as contexts.json lists them. */
const CONTEXT_FILES = readJson('contexts.json') as Record<string, string>;
const CORE_TERMS = new Set(
  Object.keys(
    (
      JSON.parse(
        readFileSync(new URL('./contexts/ngsi-ld-core-context-v1.8.json', import.meta.url), 'utf8'),
      ) as { '@context': Json }
    )['@context'],
  ),
);

const fixtureNames = (dir: string, suffix: string): string[] =>
  readdirSync(new URL(dir, SDM))
    .filter((f) => f.endsWith(suffix))
    .sort();
const NORMALIZED = fixtureNames('.', '.normalized.jsonld');
const KEYVALUES = fixtureNames('.', '.keyvalues.jsonld');
const INVALID = fixtureNames('invalid/', '.jsonld');

const modelOf = (file: string): string => file.split('.')[0] ?? file;
const enc = encodeURIComponent;
const linkHeader = (url: string) => ({
  link: `<${url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"`,
});

/** The fixture without `@context` and without the entity-level system attributes. */
function comparable(entity: Json): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(entity)) if (k !== '@context' && !SYSTEM_ATTRS.includes(k)) out[k] = v;
  return out;
}

/** The attribute names of a fixture, in document order. */
const attributeNames = (entity: Json): string[] =>
  Object.keys(entity).filter((k) => !['id', 'type', '@context', ...SYSTEM_ATTRS].includes(k));

for (const engine of engines()) {
  describe(`Smart Data Models acceptance on ${engine.name}`, () => {
    let t: TestDatabase;
    let p: Platform;
    let ctxServer: Server;
    /** Original context URL → the loopback URL serving the same document. */
    const localUrl = new Map<string, string>();
    /** Loopback URL → the `@context` object of the document served there. */
    const served = new Map<string, Json>();

    before(async () => {
      const documents = new Map<string, string>();
      for (const file of Object.values(CONTEXT_FILES))
        documents.set(`/${file}`, readFileSync(new URL(file, SDM), 'utf8'));
      documents.set('/retired-fiware-context.jsonld', JSON.stringify(RETIRED_STAND_IN));
      ctxServer = createServer((req, res) => {
        const doc = documents.get(req.url ?? '');
        if (doc === undefined) {
          res.statusCode = 404;
          res.end();
          return;
        }
        res.setHeader('content-type', 'application/ld+json');
        res.end(doc);
      });
      await new Promise<void>((r) => ctxServer.listen(0, '127.0.0.1', r));
      const base = `http://127.0.0.1:${(ctxServer.address() as AddressInfo).port}`;
      for (const [original, file] of Object.entries(CONTEXT_FILES)) {
        localUrl.set(original, `${base}/${file}`);
        served.set(
          `${base}/${file}`,
          (JSON.parse(documents.get(`/${file}`) ?? '{}') as Json)['@context'] as Json,
        );
      }
      localUrl.set(RETIRED_FIWARE_CONTEXT, `${base}/retired-fiware-context.jsonld`);
      served.set(`${base}/retired-fiware-context.jsonld`, RETIRED_STAND_IN['@context']);
      t = await engine.open();
      p = await startTestPlatform(t);
    });
    after(async () => {
      await p.stop();
      await t.dispose();
      ctxServer.closeAllConnections();
      await new Promise((r) => ctxServer.close(r));
    });

    const api = async (
      method: 'GET' | 'POST',
      url: string,
      body?: unknown,
      headers: Record<string, string> = {},
    ): Promise<Res> =>
      p.http.inject({
        method,
        url: `/ngsi-ld/v1${url}`,
        headers: body === undefined ? headers : { ...JSON_CT, ...headers },
        ...(body === undefined
          ? {}
          : { payload: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body) }),
      });
    const problem = (res: Res, type: string, status: number, what = '') => {
      assert.equal(res.statusCode, status, `${what}: ${res.body}`);
      assert.equal(res.json<{ type: string }>().type, `${ERR}${type}`, `${what}: ${res.body}`);
    };
    const get = async <T = Json>(url: string, headers: Record<string, string> = {}): Promise<T> => {
      const res = await api('GET', url, undefined, headers);
      assert.equal(res.statusCode, 200, `GET ${url}: ${res.body}`);
      return res.json<T>();
    };

    /** The fixture's @context with every stored context URL replaced by its loopback URL. */
    const rewrite = (context: unknown): unknown => {
      const one = (c: unknown): unknown => {
        if (typeof c !== 'string' || CORE_URL.test(c)) return c;
        const local = localUrl.get(c);
        if (local === undefined) throw new Error(`no local copy of the context ${c}`);
        return local;
      };
      return Array.isArray(context) ? context.map(one) : one(context);
    };
    /** A fixture ready to send: context rewritten, optionally under another id. */
    const load = (path: string, idSuffix = ''): Json => {
      const entity = readJson(path);
      const out: Json = { ...entity, '@context': rewrite(entity['@context']) };
      // Only URN ids get the suffix: a malformed id (invalid/id-not-uri) stays as published.
      if (typeof entity['id'] === 'string' && entity['id'].startsWith('urn:'))
        out['id'] = `${entity['id']}${idSuffix}`;
      return out;
    };
    /** The domain context of a (rewritten) fixture: its one non-core context URL, if any. */
    const domainContext = (entity: Json): string | undefined => {
      const ctx = entity['@context'];
      const urls = (Array.isArray(ctx) ? ctx : [ctx]).filter(
        (c): c is string => typeof c === 'string' && !CORE_URL.test(c),
      );
      assert.ok(urls.length <= 1, `one domain context expected, got ${urls.join(', ')}`);
      return urls[0];
    };
    const linkFor = (entity: Json): Record<string, string> => {
      const url = domainContext(entity);
      return url === undefined ? {} : linkHeader(url);
    };
    /**
     * The IRI a term expands to under the fixture's domain context, read from the context file: its
     * absolute IRI definition, or the core `@vocab` for a term the context does not define.
     */
    const expectedIri = (entity: Json, term: string): string => {
      const url = domainContext(entity);
      const definition = url === undefined ? undefined : served.get(url)?.[term];
      if (definition === undefined) return `${DEFAULT_VOCAB}${term}`;
      const iri =
        typeof definition === 'string' ? definition : (definition as Record<string, unknown> | null)?.['@id'];
      assert.ok(
        typeof iri === 'string' && /^https?:\/\//.test(iri),
        `${term}: ${JSON.stringify(definition)}`,
      );
      return iri;
    };
    /**
     * How an expanded IRI reads in a core-context-only response: IRIs under the core `@vocab` compact
     * back to the bare term (JSON-LD vocabulary-relative compaction), every other IRI stays whole.
     */
    const coreView = (iri: string): string =>
      iri.startsWith(DEFAULT_VOCAB) ? iri.slice(DEFAULT_VOCAB.length) : iri;
    /** Two attributes of a fixture whose expansion the domain context decides (core terms excluded). */
    const probeTerms = (entity: Json): string[] =>
      attributeNames(entity)
        .filter((a) => !CORE_TERMS.has(a))
        .slice(0, 2);

    /** Creates a fixture (as ld+json, @context in the body) and asserts 201 with its Location. */
    const create = async (entity: Json): Promise<void> => {
      const res = await api('POST', '/entities', entity, LD_CT);
      assert.equal(res.statusCode, 201, `create ${String(entity['id'])}: ${res.body}`);
      assert.equal(res.headers['location'], `/ngsi-ld/v1/entities/${enc(String(entity['id']))}`);
    };

    describe('normalized examples', () => {
      for (const file of NORMALIZED) {
        it(`${modelOf(file)}: creates, retrieves unchanged under its context, and expands its terms`, async () => {
          const entity = load(file);
          const id = String(entity['id']);
          await create(entity);

          const res = await api('GET', `/entities/${enc(id)}`, undefined, {
            ...linkFor(entity),
            ...LD_ACCEPT,
          });
          assert.equal(res.statusCode, 200, res.body);
          assert.match(String(res.headers['content-type']), /^application\/ld\+json/);
          const { ['@context']: echoed, ...body } = res.json<Json>();
          assert.deepStrictEqual(body, comparable(entity));
          assert.deepStrictEqual(echoed, domainContext(entity) ?? CORE_V18);

          // Core context only: the type and attribute names come back as the IRIs they expanded to.
          const expanded = await get(`/entities/${enc(id)}`);
          assert.equal(expanded['type'], coreView(expectedIri(entity, String(entity['type']))));
          const probes = probeTerms(entity);
          assert.equal(probes.length, 2);
          for (const term of probes) {
            const name = coreView(expectedIri(entity, term));
            assert.ok(name in expanded, `${term} → ${name}; got ${Object.keys(expanded).join(', ')}`);
            assert.deepStrictEqual(expanded[name], entity[term]);
          }
        });
      }

      it('expands terms that no context defines through the core @vocab', async () => {
        for (const [file, term] of [
          ['AirQualityObserved.normalized.jsonld', 'typeOfLocation'],
          ['OffStreetParking.normalized.jsonld', 'parkingSiteID'],
        ] as const) {
          const entity = load(file, ':vocab');
          await create(entity);
          // Selecting the attribute by its full default-context IRI finds it.
          const iri = `${DEFAULT_VOCAB}${term}`;
          const picked = await get(`/entities/${enc(String(entity['id']))}?attrs=${enc(iri)}`);
          assert.deepStrictEqual(Object.keys(picked).sort(), ['id', term, 'type'].sort(), file);
          assert.deepStrictEqual(picked[term], entity[term]);
        }
      });
    });

    describe('keyValues examples', () => {
      for (const file of KEYVALUES) {
        it(`${modelOf(file)}: creates from keyValues and answers the same keyValues`, async () => {
          const entity = load(file, ':kv');
          await create(entity);
          const kv = await get(`/entities/${enc(String(entity['id']))}?options=keyValues`, linkFor(entity));
          assert.deepStrictEqual(kv, comparable(entity));
        });
      }

      // Four of the eight keyValues examples carry `address: {…, "type": "PostalAddress"}` (schema.org
      // style). The object has no NGSI-LD core member (value, object, languageMap, …), so by the concise
      // rules it is a compound Property value; its own `type` member is data, not an attribute type.
      it('takes a keyValues compound value with its own non-NGSI-LD "type" (address.type "PostalAddress") as a Property value', async () => {
        const entity = {
          id: 'urn:ngsi-ld:Place:postal-address',
          type: 'Place',
          address: { streetAddress: 'Plaza de España', addressLocality: 'Madrid', type: 'PostalAddress' },
        };
        const res = await api('POST', '/entities', entity);
        assert.equal(res.statusCode, 201, res.body);
        assert.deepStrictEqual(await get(`/entities/${enc(entity.id)}?options=keyValues`), entity);
      });
    });

    describe('queries', () => {
      for (const file of NORMALIZED) {
        it(`${modelOf(file)}: is found by type under its context`, async () => {
          const entity = load(file, ':q');
          await create(entity);
          const found = await get<Json[]>(
            `/entities?type=${enc(String(entity['type']))}&limit=1000`,
            linkFor(entity),
          );
          const mine = found.find((e) => e['id'] === entity['id']);
          assert.ok(mine, `${String(entity['id'])} not in ${found.map((e) => String(e['id'])).join(', ')}`);
          assert.deepStrictEqual(mine, comparable(entity));
          for (const e of found) assert.equal(e['type'], entity['type']);
        });
      }

      it('AirQualityObserved: q on a numeric property (no2 is 69)', async () => {
        const entity = load('AirQualityObserved.normalized.jsonld', ':no2');
        await create(entity);
        const ids = async (q: string) =>
          (
            await get<Json[]>(`/entities?type=AirQualityObserved&q=${enc(q)}&limit=1000`, linkFor(entity))
          ).map((e) => e['id']);
        assert.ok((await ids('no2>50')).includes(entity['id']));
        assert.ok((await ids('no2==69')).includes(entity['id']));
        assert.ok(!(await ids('no2>100')).includes(entity['id']));
        assert.ok((await ids('no2>50;temperature<20')).includes(entity['id']));
      });
    });

    describe('invalid examples', () => {
      for (const file of INVALID) {
        it(`refuses ${file} with BadRequestData and writes nothing`, async () => {
          // A suffix keeps the id apart from the valid example the file derives from.
          const entity = load(`invalid/${file}`, ':invalid');
          problem(await api('POST', '/entities', entity, LD_CT), 'BadRequestData', 400, file);
          const id = entity['id'];
          if (typeof id === 'string' && id.startsWith('urn:'))
            problem(await api('GET', `/entities/${enc(id)}`), 'ResourceNotFound', 404, `${file} GET`);
        });
      }

      it('refuses the programme-published Building example with "Geoproperty"', async () => {
        const entity = load('invalid/programme/sdm-Building-normalized-Geoproperty.jsonld');
        problem(await api('POST', '/entities', entity, LD_CT), 'BadRequestData', 400);
        problem(await api('GET', `/entities/${enc(String(entity['id']))}`), 'ResourceNotFound', 404);
      });

      it('refuses the programme-published ParkingSpot example that is not JSON with InvalidRequest', async () => {
        const raw = readFileSync(
          new URL('invalid/programme/sdm-ParkingSpot-normalized-missing-comma.jsonld', SDM),
        );
        problem(await api('POST', '/entities', raw, LD_CT), 'InvalidRequest', 400);
      });
    });

    describe('batch create', () => {
      it('creates the normalized examples in one application/json batch per domain context', async () => {
        // One Link header names one context, so the examples go in one batch per domain context.
        const groups = new Map<string, Json[]>();
        for (const file of NORMALIZED) {
          const entity = load(file, ':batch');
          const key = domainContext(entity) ?? '';
          groups.set(key, [...(groups.get(key) ?? []), entity]);
        }
        for (const [context, entities] of groups) {
          const link = context === '' ? {} : linkHeader(context);
          const res = await api('POST', '/entityOperations/create', entities.map(comparable), link);
          assert.equal(res.statusCode, 201, res.body);
          assert.deepStrictEqual(
            res.json(),
            entities.map((e) => e['id']),
          );
          for (const entity of entities) {
            const back = await get(`/entities/${enc(String(entity['id']))}`, link);
            assert.deepStrictEqual(back, comparable(entity));
          }
        }
      });

      // §6.3.5: in an application/ld+json batch every element carries its own @context. Each model
      // has its own domain context, so one batch of all models is only right if each is honoured.
      it('honours each element’s own @context in one application/ld+json batch of all models', async () => {
        const entities = NORMALIZED.map((file) => load(file, ':ldbatch'));
        const res = await api('POST', '/entityOperations/create', entities, LD_CT);
        assert.equal(res.statusCode, 201, res.body);
        assert.deepStrictEqual(
          res.json(),
          entities.map((e) => e['id']),
        );
        const wrong: string[] = [];
        for (const entity of entities) {
          const id = String(entity['id']);
          const expanded = await get(`/entities/${enc(id)}`);
          const want = coreView(expectedIri(entity, String(entity['type'])));
          if (expanded['type'] !== want) wrong.push(`${id}: type ${String(expanded['type'])}, want ${want}`);
          for (const term of probeTerms(entity)) {
            const name = coreView(expectedIri(entity, term));
            if (!(name in expanded)) wrong.push(`${id}: ${term} not stored as ${name}`);
          }
        }
        assert.deepStrictEqual(wrong, []);
      });
    });
  });
}
