/**
 * Context source registrations (ETSI GS CIM 009 v1.8 §5.2.9, §5.9, §5.10): unit tests of the
 * model (parsing, patching, rendering, operation groups), then, on every engine of this run, the
 * HTTP API in-process — create, retrieve, query by type/id/idPattern/attrs/geo, pagination and
 * count, update, delete, sysAttrs, @context compaction, tenants, bad input, the §5.9.2 exclusive
 * overlap rule, the audit record and outbox event of each write — the query planner
 * `registrationsFor`, and the secured access model.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { engines, type TestDatabase } from '../../test/helpers/engines.ts';
import { signIn, startTestPlatform } from '../../test/helpers/platform.ts';
import type { Platform } from '../platform.ts';
import { systemContext } from '../trust/index.ts';
import {
  applyRegistrationPatch,
  operationsOf,
  parseRegistration,
  parseRegistrationPatch,
  renderRegistration,
  type Registration,
} from './csource.model.ts';
import { registrationsFor } from './csource.service.ts';
import type { Terms } from './entity.model.ts';
import type { TwinCall, TwinRuntime } from './entity.service.ts';
import { NgsiError } from './errors.ts';
import { CORE_LD_CONTEXT } from './ldcontext.ts';

const ERR = 'https://uri.etsi.org/ngsi-ld/errors/';
const VOCAB = 'https://uri.etsi.org/ngsi-ld/default-context/';
const EX = 'https://example.org/ns#';
const JSON_CT = { 'content-type': 'application/json' };
const REG = 'urn:ngsi-ld:ContextSourceRegistration:';
const enc = encodeURIComponent;

/** A user @context: every plain term lives in the example namespace. */
const exTerms: Terms = {
  expand: (t) => (t.includes(':') ? t : `${EX}${t}`),
  compact: (iri) => (iri.startsWith(EX) ? iri.slice(EX.length) : iri),
};

const NOW = new Date('2026-01-01T00:00:00Z');
const FUTURE = '2099-01-01T00:00:00Z';

/** A valid registration body; `extra` members replace or add. */
function body(n: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: `${REG}${n}`,
    type: 'ContextSourceRegistration',
    information: [{ entities: [{ type: 'Vehicle' }], propertyNames: ['speed'] }],
    endpoint: 'http://cs.example.org:8080/ngsi-ld',
    ...extra,
  };
}

/** Every member of Table 5.2.9-1, as a client sends it. */
const FULL = {
  id: `${REG}full`,
  type: 'ContextSourceRegistration',
  registrationName: '宝山区交通信号',
  description: 'Signals and vehicles of the Baoshan traffic platform',
  information: [
    {
      entities: [
        { id: 'urn:ngsi-ld:Vehicle:A1', type: 'Vehicle' },
        { idPattern: '^urn:ngsi-ld:Signal:', type: 'Signal' },
      ],
      propertyNames: ['speed', 'status'],
      relationshipNames: ['isParkedAt'],
    },
    { propertyNames: ['temperature'] },
  ],
  tenant: 'baoshan',
  observationInterval: { startAt: '2020-01-01T00:00:00Z', endAt: '2030-01-01T00:00:00Z' },
  managementInterval: { startAt: '2020-01-01T00:00:00Z' },
  location: { type: 'Point', coordinates: [121.489, 31.398] },
  observationSpace: {
    type: 'Polygon',
    coordinates: [
      [
        [121.3, 31.3],
        [121.6, 31.3],
        [121.6, 31.5],
        [121.3, 31.5],
        [121.3, 31.3],
      ],
    ],
  },
  operationSpace: { type: 'Point', coordinates: [121.49, 31.4] },
  expiresAt: FUTURE,
  endpoint: 'https://traffic.baoshan.example.cn/ngsi-ld',
  contextSourceInfo: [{ key: 'Authorization', value: 'Bearer secret-token' }],
  scope: '/Shanghai/Baoshan',
  mode: 'inclusive',
  operations: ['federationOps', 'createEntity'],
  refreshRate: 'PT1M',
  management: { localOnly: true, cacheDuration: 'PT30S', timeout: 2000, cooldown: 10000 },
  contextSourceAlias: 'baoshan-traffic',
  datasetId: ['urn:ngsi-ld:Dataset:camera', '@none'],
};

const badRequest = (fn: () => unknown, detail: RegExp) =>
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof NgsiError, String(e));
    assert.equal(e.type, 'BadRequestData');
    assert.match(e.detail, detail);
    return true;
  });

/** Bad bodies and the member path their error names; the HTTP suite posts the same ones. */
const BAD_BODIES: [string, unknown, RegExp][] = [
  ['not an object', ['x'], /JSON object/],
  ['a number', 42, /JSON object/],
  ['a wrong type', body('b', { type: 'Subscription' }), /^type: /],
  ['no type', { ...body('b'), type: undefined }, /^type: required/],
  ['an id that is not a URI', body('b', { id: 'reg 1' }), /^id: /],
  ['no endpoint', { ...body('b'), endpoint: undefined }, /^endpoint: required/],
  ['a non-http endpoint', body('b', { endpoint: 'ftp://cs.example.org/' }), /^endpoint: .*http or https/],
  ['a relative endpoint', body('b', { endpoint: '/ngsi-ld' }), /^endpoint: .*absolute URI/],
  ['no information', { ...body('b'), information: undefined }, /^information: required/],
  ['empty information', body('b', { information: [] }), /^information: a non-empty array/],
  ['an empty entry', body('b', { information: [{}] }), /^information\[0\]: needs at least one/],
  [
    'an entity without type',
    body('b', { information: [{ entities: [{ id: 'urn:a:1' }] }] }),
    /^information\[0\]\.entities\[0\]\.type: /,
  ],
  [
    'id and idPattern together',
    body('b', { information: [{ entities: [{ id: 'urn:a:1', idPattern: 'urn:.*', type: 'T' }] }] }),
    /^information\[0\]\.entities\[0\]: id and idPattern exclude each other/,
  ],
  [
    'a bad regex',
    body('b', { information: [{ entities: [{ idPattern: '(urn', type: 'T' }] }] }),
    /^information\[0\]\.entities\[0\]\.idPattern: .*not a regular expression/,
  ],
  [
    'an unbounded regex',
    body('b', { information: [{ entities: [{ idPattern: 'a'.repeat(300), type: 'T' }] }] }),
    /idPattern: at most 256/,
  ],
  [
    'an unknown EntityInfo member',
    body('b', { information: [{ entities: [{ type: 'T', ids: ['x'] }] }] }),
    /entities\[0\]\.ids: not a member/,
  ],
  [
    'a bad attribute name',
    body('b', { information: [{ propertyNames: ['a(b)'] }] }),
    /^information\[0\]\.propertyNames\[0\]: /,
  ],
  [
    'an unknown operation',
    body('b', { operations: ['retrieveOps', 'teleport'] }),
    /^operations\[1\]: "teleport"/,
  ],
  ['empty operations', body('b', { operations: [] }), /^operations: a non-empty array/],
  ['an unknown mode', body('b', { mode: 'sometimes' }), /^mode: "sometimes" is not one of/],
  ['a bad expiresAt', body('b', { expiresAt: 'tomorrow' }), /^expiresAt: .*ISO 8601/],
  [
    'an expiresAt in the past',
    body('b', { expiresAt: '2001-01-01T00:00:00Z' }),
    /^expiresAt: .*not in the future/,
  ],
  [
    'a bad interval date',
    body('b', { observationInterval: { startAt: '2020-13-01' } }),
    /^observationInterval\.startAt: /,
  ],
  [
    'an inverted interval',
    body('b', { managementInterval: { startAt: '2025-01-01T00:00:00Z', endAt: '2024-01-01T00:00:00Z' } }),
    /^managementInterval: endAt is before startAt/,
  ],
  ['invalid GeoJSON', body('b', { location: { type: 'Point', coordinates: [121, 95] } }), /^location/],
  ['not GeoJSON', body('b', { observationSpace: { lat: 31, lon: 121 } }), /^observationSpace/],
  ['an unknown member', body('b', { colour: 'red' }), /^colour: not a member of a ContextSourceRegistration/],
  [
    'a bad contextSourceInfo',
    body('b', { contextSourceInfo: [{ key: 'k' }] }),
    /^contextSourceInfo\[0\]\.value: /,
  ],
  ['a bad refreshRate', body('b', { refreshRate: '5 minutes' }), /^refreshRate: .*ISO 8601 duration/],
  ['a bad management timeout', body('b', { management: { timeout: -1 } }), /^management\.timeout: /],
  ['a bad scope', body('b', { scope: 'Shanghai' }), /^scope: /],
  ['an empty description', body('b', { description: '' }), /^description: a non-empty string/],
  ['a null member on create', body('b', { description: null }), /^description: null is not a value/],
  [
    'an exclusive registration with an idPattern',
    body('b', {
      mode: 'exclusive',
      information: [{ entities: [{ idPattern: '.*', type: 'T' }], propertyNames: ['p'] }],
    }),
    /^information\[0\]: an exclusive registration names every entity by id/,
  ],
  [
    'an exclusive registration without attributes',
    body('b', { mode: 'exclusive', information: [{ entities: [{ id: 'urn:a:1', type: 'T' }] }] }),
    /^information\[0\]: an exclusive registration names its propertyNames/,
  ],
];

describe('csource.model', () => {
  it('parses a minimal registration: generated id, inclusive mode, terms expanded', () => {
    const { id: _id, ...withoutId } = body('x');
    const reg = parseRegistration(withoutId, CORE_LD_CONTEXT, { now: NOW });
    assert.match(reg.id, /^urn:ngsi-ld:ContextSourceRegistration:[0-9a-f-]{36}$/);
    assert.deepEqual(reg, {
      id: reg.id,
      type: 'ContextSourceRegistration',
      information: [{ entities: [{ type: [`${VOCAB}Vehicle`] }], propertyNames: [`${VOCAB}speed`] }],
      endpoint: 'http://cs.example.org:8080/ngsi-ld',
      mode: 'inclusive',
    });
  });

  it('round-trips every member through parse and render', () => {
    const reg = parseRegistration(FULL, exTerms, { now: NOW });
    assert.deepEqual(reg.information[0]?.entities?.[1], {
      idPattern: '^urn:ngsi-ld:Signal:',
      type: [`${EX}Signal`],
    });
    assert.deepEqual(reg.information[0].relationshipNames, [`${EX}isParkedAt`]);
    const out = renderRegistration(reg, exTerms, {
      createdAt: '2026-01-01T00:00:00.000Z',
      modifiedAt: '2026-01-02T00:00:00.000Z',
      sysAttrs: false,
      showSourceInfo: true,
    });
    assert.deepEqual(out, FULL);
    // Under another @context the same registration reads with full IRIs.
    const core = renderRegistration(reg, CORE_LD_CONTEXT, {
      createdAt: '',
      modifiedAt: '',
      sysAttrs: false,
      showSourceInfo: true,
    });
    assert.deepEqual((core['information'] as { propertyNames?: string[] }[])[1]?.propertyNames, [
      `${EX}temperature`,
    ]);
  });

  it('renders sysAttrs on request and hides contextSourceInfo when told to', () => {
    const reg = parseRegistration(FULL, exTerms, { now: NOW });
    const out = renderRegistration(reg, exTerms, {
      createdAt: 'c',
      modifiedAt: 'm',
      sysAttrs: true,
      showSourceInfo: false,
    });
    assert.equal(out['createdAt'], 'c');
    assert.equal(out['modifiedAt'], 'm');
    assert.equal(out['contextSourceInfo'], undefined);
  });

  it('ignores the read-only members (Table 5.2.9-2) a client copies back', () => {
    const reg = parseRegistration(
      body('x', {
        createdAt: 'x',
        modifiedAt: 'y',
        status: 'ok',
        timesSent: 3,
        timesFailed: 0,
        lastSuccess: 'z',
      }),
      CORE_LD_CONTEXT,
      { now: NOW },
    );
    assert.deepEqual(Object.keys(reg), ['id', 'type', 'information', 'endpoint', 'mode']);
  });

  it('accepts the type as its IRI and arrays of entity types', () => {
    const reg = parseRegistration(
      body('x', {
        type: 'https://uri.etsi.org/ngsi-ld/ContextSourceRegistration',
        information: [{ entities: [{ type: ['Vehicle', 'Car'] }] }],
      }),
      CORE_LD_CONTEXT,
      { now: NOW },
    );
    assert.deepEqual(reg.information[0]?.entities?.[0]?.type, [`${VOCAB}Vehicle`, `${VOCAB}Car`]);
  });

  for (const [name, raw, detail] of BAD_BODIES)
    it(`refuses ${name}`, () =>
      badRequest(() => parseRegistration(raw, CORE_LD_CONTEXT, { now: NOW }), detail));

  it('patches member by member: replaces, removes with null, keeps the rest', () => {
    const old = parseRegistration(body('p', { description: 'old', scope: '/A' }), CORE_LD_CONTEXT, {
      now: NOW,
    });
    const patch = parseRegistrationPatch(
      { endpoint: 'https://new.example.org', description: null, id: old.id, createdAt: 'ignored' },
      CORE_LD_CONTEXT,
      { now: NOW, id: old.id },
    );
    const next = applyRegistrationPatch(old, patch);
    assert.equal(next.endpoint, 'https://new.example.org');
    assert.equal(next.description, undefined);
    assert.deepEqual(next.scope, ['/A']);
    assert.deepEqual(next.information, old.information);
    assert.equal(next.mode, 'inclusive');
  });

  it('refuses patches that change the id or type, remove a required member, change nothing or break exclusivity', () => {
    const old = parseRegistration(body('p'), CORE_LD_CONTEXT, { now: NOW });
    const opts = { now: NOW, id: old.id };
    badRequest(
      () => parseRegistrationPatch({ id: `${REG}other` }, CORE_LD_CONTEXT, opts),
      /^id: .*cannot be changed/,
    );
    badRequest(() => parseRegistrationPatch({ type: 'Subscription' }, CORE_LD_CONTEXT, opts), /^type: /);
    badRequest(
      () => parseRegistrationPatch({ endpoint: null }, CORE_LD_CONTEXT, opts),
      /^endpoint: required/,
    );
    badRequest(
      () => parseRegistrationPatch({ information: null }, CORE_LD_CONTEXT, opts),
      /^information: required/,
    );
    badRequest(() => parseRegistrationPatch({}, CORE_LD_CONTEXT, opts), /changes no member/);
    badRequest(() => parseRegistrationPatch([], CORE_LD_CONTEXT, opts), /JSON object/);
    badRequest(
      () => parseRegistrationPatch({ expiresAt: '2001-01-01T00:00:00Z' }, CORE_LD_CONTEXT, opts),
      /^expiresAt/,
    );
    // The old entry names entities by type only: exclusive needs ids and attributes.
    const patch = parseRegistrationPatch({ mode: 'exclusive' }, CORE_LD_CONTEXT, opts);
    badRequest(() => applyRegistrationPatch(old, patch), /^information\[0\]: an exclusive registration/);
  });

  it('expands operation groups; federationOps when none are named', () => {
    const base = parseRegistration(body('o'), CORE_LD_CONTEXT, { now: NOW });
    const dflt = operationsOf(base);
    assert.ok(dflt.has('queryEntity') && dflt.has('createSubscription'));
    assert.ok(!dflt.has('createEntity'));
    const upd: Registration = { ...base, operations: ['updateOps', 'deleteEntity'] };
    assert.deepEqual([...operationsOf(upd)].sort(), [
      'deleteEntity',
      'replaceAttrs',
      'replaceEntity',
      'updateAttrs',
      'updateEntity',
    ]);
  });
});

interface Res {
  statusCode: number;
  headers: Record<string, unknown>;
  body: string;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the shape it expects
  json<T>(): T;
}

for (const engine of engines()) {
  describe(`NGSI-LD context source registrations on ${engine.name}`, () => {
    let t: TestDatabase;
    let p: Platform;

    before(async () => {
      t = await engine.open();
      p = await startTestPlatform(t, { env: { BODY_LIMIT_BYTES: '200000' } });
    });
    after(async () => {
      await p.stop();
      await t.dispose();
    });

    const api = async (
      method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
      url: string,
      payload?: unknown,
      headers: Record<string, string> = {},
    ): Promise<Res> =>
      p.http.inject({
        method,
        url: `/ngsi-ld/v1${url}`,
        headers: payload === undefined ? headers : { ...JSON_CT, ...headers },
        ...(payload === undefined
          ? {}
          : { payload: typeof payload === 'string' ? payload : JSON.stringify(payload) }),
      });
    const problem = (res: Res, type: string, status: number, detail?: RegExp) => {
      assert.equal(res.statusCode, status, res.body);
      const b = res.json<{ type: string; detail: string }>();
      assert.equal(b.type, `${ERR}${type}`, res.body);
      if (detail) assert.match(b.detail, detail);
    };
    const create = async (b: unknown, headers: Record<string, string> = {}) => {
      const res = await api('POST', '/csourceRegistrations', b, headers);
      assert.equal(res.statusCode, 201, res.body);
      return res;
    };
    const ids = (res: Res) => {
      assert.equal(res.statusCode, 200, res.body);
      return res
        .json<{ id: string }[]>()
        .map((r) => r.id.slice(REG.length))
        .sort();
    };
    const tenant = (name: string) => ({ 'ngsild-tenant': name });
    /** Audit records (queued or sealed) and outbox events of one registration. */
    const trail = async (id: string) => {
      const { rows } = await sql<{ action: string }>`
        select action from trust.audit_queue where resource_type = 'ngsi-ld-csource-registration' and resource_id = ${id}
        union all
        select action from trust.audit_records where resource_type = 'ngsi-ld-csource-registration' and resource_id = ${id}`.execute(
        t.database.db,
      );
      const { rows: events } = await sql<{ topic: string }>`select topic from kernel.outbox
        where topic like 'twin.csource.%' and payload ->> 'id' = ${id} order by seq`.execute(t.database.db);
      return { audit: rows.map((r) => r.action).sort(), events: events.map((e) => e.topic) };
    };

    it('creates (201, Location), retrieves, answers 409 on a duplicate id, and renders sysAttrs', async () => {
      const res = await create(FULL);
      assert.equal(res.headers['location'], `/ngsi-ld/v1/csourceRegistrations/${enc(FULL.id)}`);
      const got = await api('GET', `/csourceRegistrations/${enc(FULL.id)}`);
      assert.equal(got.statusCode, 200, got.body);
      // Without a user @context, terms come back as the default-context IRIs they were stored as.
      const g = got.json<Record<string, unknown>>();
      assert.deepEqual((g['information'] as { propertyNames: string[] }[])[0]?.propertyNames, [
        'speed',
        'status',
      ]);
      assert.equal(g['endpoint'], FULL.endpoint);
      assert.deepEqual(g['contextSourceInfo'], FULL.contextSourceInfo);
      assert.equal(g['createdAt'], undefined);
      problem(await api('POST', '/csourceRegistrations', FULL), 'AlreadyExists', 409);
      const sys = await api('GET', `/csourceRegistrations/${enc(FULL.id)}?options=sysAttrs`);
      const s = sys.json<{ createdAt: string; modifiedAt: string }>();
      assert.match(s.createdAt, /^\d{4}-\d{2}-\d{2}T.*Z$/);
      assert.equal(s.modifiedAt, s.createdAt);
      const ld = await api('GET', `/csourceRegistrations/${enc(FULL.id)}`, undefined, {
        accept: 'application/ld+json',
      });
      assert.equal(
        ld.json<Record<string, unknown>>()['@context'],
        'https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld',
      );
      problem(await api('GET', `/csourceRegistrations/${enc(`${REG}none`)}`), 'ResourceNotFound', 404);
    });

    it('generates an id when none is given', async () => {
      const { id: _id, ...noId } = body('gen');
      const res = await create(noId, tenant('gen'));
      assert.match(
        String(res.headers['location']),
        /^\/ngsi-ld\/v1\/csourceRegistrations\/urn%3Angsi-ld%3AContextSourceRegistration%3A/,
      );
      assert.equal(res.headers['ngsild-tenant'], 'gen');
    });

    it('compacts and expands terms with the @context of a Link header', async () => {
      const ctx = await api('POST', '/jsonldContexts', {
        '@context': { ex: EX, Vehicle: 'ex:Vehicle', speed: 'ex:speed' },
      });
      assert.equal(ctx.statusCode, 201, ctx.body);
      const link = {
        link: `<http://localhost/ngsi-ld/v1/jsonldContexts/${String(ctx.headers['location']).split('/').pop() ?? ''}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"`,
      };
      const h = { ...tenant('ctx'), ...link };
      await create(body('ctx'), h);
      const withCtx = await api('GET', `/csourceRegistrations/${enc(`${REG}ctx`)}`, undefined, h);
      assert.deepEqual(withCtx.json<{ information: unknown }>().information, [
        { entities: [{ type: 'Vehicle' }], propertyNames: ['speed'] },
      ]);
      const plain = await api('GET', `/csourceRegistrations/${enc(`${REG}ctx`)}`, undefined, tenant('ctx'));
      assert.deepEqual(plain.json<{ information: unknown }>().information, [
        { entities: [{ type: `${EX}Vehicle` }], propertyNames: [`${EX}speed`] },
      ]);
      assert.deepEqual(ids(await api('GET', '/csourceRegistrations?type=Vehicle', undefined, h)), ['ctx']);
      assert.deepEqual(
        ids(await api('GET', '/csourceRegistrations?type=Vehicle', undefined, tenant('ctx'))),
        [],
      );
      assert.deepEqual(
        ids(
          await api(
            'GET',
            `/csourceRegistrations?type=${enc(`${EX}Vehicle`)}&attrs=${enc(`${EX}speed`)}`,
            undefined,
            tenant('ctx'),
          ),
        ),
        ['ctx'],
      );
    });

    describe('query', () => {
      const h = tenant('query');
      before(async () => {
        await create(
          body('v1', {
            information: [
              { entities: [{ id: 'urn:ngsi-ld:Vehicle:1', type: 'Vehicle' }], propertyNames: ['speed'] },
            ],
          }),
          h,
        );
        await create(
          body('v2', {
            information: [{ entities: [{ idPattern: '^urn:ngsi-ld:Vehicle:[2-5]$', type: 'Vehicle' }] }],
          }),
          h,
        );
        await create(
          body('b1', {
            information: [{ entities: [{ type: 'Building' }], relationshipNames: ['owner'] }],
            location: { type: 'Point', coordinates: [121.47, 31.23] },
          }),
          h,
        );
        await create(
          body('t1', {
            information: [{ propertyNames: ['temperature'] }],
            observationSpace: {
              type: 'Polygon',
              coordinates: [
                [
                  [121.0, 31.0],
                  [122.0, 31.0],
                  [122.0, 32.0],
                  [121.0, 32.0],
                  [121.0, 31.0],
                ],
              ],
            },
          }),
          h,
        );
        await create(body('old', { information: [{ entities: [{ type: 'Vehicle' }] }] }), h);
        // Expired: still retrievable, never listed.
        await sql`update twin.csource_registrations set expires_at = now() - interval '1 minute'
          where tenant = 'query' and id = ${`${REG}old`}`.execute(t.database.db);
      });

      it('filters by type, id, idPattern and attrs, leaving expired registrations out', async () => {
        const q = (s: string) => api('GET', `/csourceRegistrations${s}`, undefined, h);
        assert.deepEqual(ids(await q('')), ['b1', 't1', 'v1', 'v2']);
        assert.deepEqual(ids(await q('?type=Vehicle')), ['t1', 'v1', 'v2']);
        assert.deepEqual(ids(await q('?type=Building,Vehicle')), ['b1', 't1', 'v1', 'v2']);
        assert.deepEqual(ids(await q(`?type=Vehicle&id=${enc('urn:ngsi-ld:Vehicle:3')}`)), ['t1', 'v2']);
        assert.deepEqual(ids(await q(`?id=${enc('urn:ngsi-ld:Vehicle:1,urn:ngsi-ld:Vehicle:9')}`)), [
          'b1',
          't1',
          'v1',
        ]);
        assert.deepEqual(ids(await q(`?idPattern=${enc('^urn:ngsi-ld:Vehicle:1$')}`)), [
          'b1',
          't1',
          'v1',
          'v2',
        ]);
        assert.deepEqual(ids(await q(`?idPattern=${enc('Truck')}&type=Vehicle`)), ['t1', 'v2']);
        assert.deepEqual(ids(await q('?type=Vehicle&attrs=speed')), ['v1', 'v2']);
        assert.deepEqual(ids(await q('?attrs=owner,temperature')), ['b1', 't1', 'v2']);
        const old = await api('GET', `/csourceRegistrations/${enc(`${REG}old`)}`, undefined, h);
        assert.equal(old.statusCode, 200, old.body);
      });

      it('filters by geo-query on location and observationSpace', async () => {
        const q = (s: string) => api('GET', `/csourceRegistrations${s}`, undefined, h);
        const near = `?georel=${enc('near;maxDistance==2000')}&geometry=Point&coordinates=${enc('[121.48,31.23]')}`;
        assert.deepEqual(ids(await q(near)), ['b1']);
        const far = `?georel=${enc('near;maxDistance==50')}&geometry=Point&coordinates=${enc('[121.48,31.23]')}`;
        assert.deepEqual(ids(await q(far)), []);
        const space = `?georel=intersects&geometry=Point&coordinates=${enc('[121.5,31.5]')}&geoproperty=observationSpace`;
        assert.deepEqual(ids(await q(space)), ['t1']);
        problem(await q(space.replace('observationSpace', 'height')), 'BadRequestData', 400, /^geoproperty/);
        problem(await q('?georel=near&geometry=Point&coordinates=[1,2]'), 'BadRequestData', 400, /georel/);
      });

      it('pages with limit and offset, counts, and links the next and previous pages', async () => {
        const first = await api('GET', '/csourceRegistrations?limit=2&count=true', undefined, h);
        assert.deepEqual(ids(first), ['b1', 't1']);
        assert.equal(first.headers['ngsild-results-count'], '4');
        assert.match(String(first.headers['link']), /offset=2>; rel="next"/);
        const last = await api('GET', '/csourceRegistrations?limit=3&offset=3&count=true', undefined, h);
        assert.deepEqual(ids(last), ['v2']);
        assert.match(String(last.headers['link']), /offset=0[^>]*>; rel="prev"/);
        assert.doesNotMatch(String(last.headers['link']), /rel="next"/);
        const none = await api('GET', '/csourceRegistrations?limit=0&count=true', undefined, h);
        assert.deepEqual(ids(none), []);
        assert.equal(none.headers['ngsild-results-count'], '4');
        problem(await api('GET', '/csourceRegistrations?limit=1001', undefined, h), 'TooManyResults', 403);
        problem(await api('GET', '/csourceRegistrations?limit=-1', undefined, h), 'BadRequestData', 400);
      });

      it('answers OperationNotSupported for q and csf, BadRequestData for bad parameters', async () => {
        problem(
          await api('GET', '/csourceRegistrations?q=speed>1', undefined, h),
          'OperationNotSupported',
          422,
          /^q: /,
        );
        problem(
          await api('GET', `/csourceRegistrations?csf=${enc('endpoint==x')}`, undefined, h),
          'OperationNotSupported',
          422,
          /^csf: /,
        );
        problem(
          await api('GET', '/csourceRegistrations?id=not%20a%20uri', undefined, h),
          'BadRequestData',
          400,
          /^id: /,
        );
        problem(
          await api('GET', '/csourceRegistrations?idPattern=(', undefined, h),
          'BadRequestData',
          400,
          /^idPattern: /,
        );
        problem(
          await api('GET', '/csourceRegistrations?type=(A;B)', undefined, h),
          'BadRequestData',
          400,
          /^type: /,
        );
        problem(await api('GET', '/csourceRegistrations?options=bogus', undefined, h), 'BadRequestData', 400);
        problem(
          await api('GET', '/csourceRegistrations', undefined, { ...h, accept: 'text/html' }),
          'NotAcceptable',
          406,
        );
      });

      it('plans federation: registrationsFor matches types, ids, idPatterns, attributes and operations', async () => {
        await create(
          body('u1', { information: [{ entities: [{ type: 'Vehicle' }] }], operations: ['updateOps'] }),
          h,
        );
        const rt: TwinRuntime = { database: t.database, access: 'open', maxBatch: 100 };
        const tc: TwinCall = { call: systemContext(), tenant: 'query', terms: CORE_LD_CONTEXT };
        const plan = async (query: Parameters<typeof registrationsFor>[2]) =>
          (await registrationsFor(rt, tc, query)).map((r) => r.id.slice(REG.length)).sort();
        assert.deepEqual(await plan({ types: ['Vehicle'] }), ['t1', 'u1', 'v1', 'v2']);
        assert.deepEqual(await plan({ types: ['Vehicle'], ids: ['urn:ngsi-ld:Vehicle:1'] }), [
          't1',
          'u1',
          'v1',
        ]);
        assert.deepEqual(await plan({ types: ['Vehicle'], ids: ['urn:ngsi-ld:Vehicle:4'] }), [
          't1',
          'u1',
          'v2',
        ]);
        assert.deepEqual(await plan({ types: ['Vehicle'], ids: ['urn:ngsi-ld:Vehicle:7'] }), ['t1', 'u1']);
        assert.deepEqual(await plan({ types: ['Vehicle'], attrs: ['speed'] }), ['u1', 'v1', 'v2']);
        assert.deepEqual(await plan({ types: ['Building'], attrs: ['owner'] }), ['b1']);
        assert.deepEqual(await plan({ types: ['Building'], attrs: ['speed'] }), []);
        assert.deepEqual(await plan({ attrs: ['temperature'] }), ['t1', 'u1', 'v2']);
        assert.deepEqual(await plan({ types: ['Vehicle'], operation: 'queryEntity' }), ['t1', 'v1', 'v2']);
        assert.deepEqual(await plan({ types: ['Vehicle'], operation: 'replaceEntity' }), ['u1']);
        assert.deepEqual(
          await registrationsFor(rt, { ...tc, tenant: 'nowhere' }, { types: ['Vehicle'] }),
          [],
        );
        assert.equal(
          (await api('DELETE', `/csourceRegistrations/${enc(`${REG}u1`)}`, undefined, h)).statusCode,
          204,
        );
      });
    });

    it('updates by merge: members replaced or removed, others kept, modifiedAt moves', async () => {
      const h = tenant('upd');
      await create(body('u', { description: 'first', registrationName: 'n' }), h);
      const url = `/csourceRegistrations/${enc(`${REG}u`)}`;
      const before1 = (await api('GET', `${url}?options=sysAttrs`, undefined, h)).json<
        Record<string, string>
      >();
      await new Promise((r) => setTimeout(r, 5));
      const res = await api(
        'PATCH',
        url,
        { endpoint: 'https://other.example.org/ld', description: null, expiresAt: FUTURE },
        h,
      );
      assert.equal(res.statusCode, 204, res.body);
      const after1 = (await api('GET', `${url}?options=sysAttrs`, undefined, h)).json<
        Record<string, string>
      >();
      assert.equal(after1['endpoint'], 'https://other.example.org/ld');
      assert.equal(after1['description'], undefined);
      assert.equal(after1['registrationName'], 'n');
      assert.equal(after1['expiresAt'], FUTURE);
      assert.equal(after1['createdAt'], before1['createdAt']);
      assert.ok((after1['modifiedAt'] ?? '') > (before1['modifiedAt'] ?? ''));
      problem(await api('PATCH', url, { id: `${REG}other` }, h), 'BadRequestData', 400, /^id: /);
      problem(await api('PATCH', url, { type: 'Subscription' }, h), 'BadRequestData', 400, /^type: /);
      problem(await api('PATCH', url, { endpoint: null }, h), 'BadRequestData', 400, /^endpoint: /);
      problem(await api('PATCH', url, { mode: 'exclusive' }, h), 'BadRequestData', 400, /exclusive/);
      problem(
        await api('PATCH', `/csourceRegistrations/${enc(`${REG}nope`)}`, { description: 'x' }, h),
        'ResourceNotFound',
        404,
      );
      problem(await api('PATCH', url, { description: 'x' }, tenant('nowhere')), 'NonexistentTenant', 404);
      const unchanged = (await api('GET', `${url}?options=sysAttrs`, undefined, h)).json<
        Record<string, string>
      >();
      assert.deepEqual(unchanged, after1);
    });

    it('deletes (204), then answers 404', async () => {
      const h = tenant('del');
      await create(body('d'), h);
      const url = `/csourceRegistrations/${enc(`${REG}d`)}`;
      assert.equal((await api('DELETE', url, undefined, h)).statusCode, 204);
      problem(await api('GET', url, undefined, h), 'ResourceNotFound', 404);
      problem(await api('DELETE', url, undefined, h), 'ResourceNotFound', 404);
    });

    it('keeps tenants apart; an unknown tenant is NonexistentTenant on read', async () => {
      await create(body('ten'), tenant('t-a'));
      assert.deepEqual(ids(await api('GET', '/csourceRegistrations', undefined, tenant('t-a'))), ['ten']);
      problem(await api('GET', `/csourceRegistrations/${enc(`${REG}ten`)}`), 'ResourceNotFound', 404);
      problem(
        await api('GET', '/csourceRegistrations', undefined, tenant('t-none')),
        'NonexistentTenant',
        404,
      );
      problem(
        await api('GET', `/csourceRegistrations/${enc(`${REG}ten`)}`, undefined, tenant('t-none')),
        'NonexistentTenant',
        404,
      );
      problem(
        await api('DELETE', `/csourceRegistrations/${enc(`${REG}ten`)}`, undefined, tenant('t-none')),
        'NonexistentTenant',
        404,
      );
      problem(
        await api('GET', '/csourceRegistrations', undefined, tenant('bad tenant!')),
        'BadRequestData',
        400,
      );
    });

    describe('bad input', () => {
      for (const [name, raw, detail] of BAD_BODIES)
        it(`refuses ${name} with BadRequestData and writes nothing`, async () => {
          const res = await api('POST', '/csourceRegistrations', raw, tenant('bad'));
          problem(res, 'BadRequestData', 400, detail);
          // The tenant is created by a first successful write only.
          problem(
            await api('GET', '/csourceRegistrations', undefined, tenant('bad')),
            'NonexistentTenant',
            404,
          );
        });

      it('refuses an idPattern PostgreSQL cannot run, broken JSON and huge bodies', async () => {
        const named = body('pg', { information: [{ entities: [{ idPattern: '(?<n>urn)', type: 'T' }] }] });
        problem(await api('POST', '/csourceRegistrations', named), 'BadRequestData', 400, /PostgreSQL/);
        problem(await api('POST', '/csourceRegistrations', '{"id": '), 'InvalidRequest', 400);
        const huge = body('huge', { description: 'x'.repeat(300_000) });
        problem(await api('POST', '/csourceRegistrations', huge), 'PayloadTooLarge', 413);
        problem(await api('GET', `/csourceRegistrations/${enc(`${REG}pg`)}`), 'ResourceNotFound', 404);
        problem(await api('GET', `/csourceRegistrations/${enc(`${REG}huge`)}`), 'ResourceNotFound', 404);
      });
    });

    it('refuses overlapping exclusive registrations (409) in both directions; auxiliary never conflicts', async () => {
      const h = tenant('excl');
      const claim = (n: string, mode: string, entity: Record<string, string>, attrs?: string[]) =>
        body(n, {
          mode,
          information: [
            { entities: [{ type: 'Vehicle', ...entity }], ...(attrs ? { propertyNames: attrs } : {}) },
          ],
        });
      const post = (b: unknown) => api('POST', '/csourceRegistrations', b, h);
      const X1 = { id: 'urn:ngsi-ld:Vehicle:X1' };
      await create(claim('e1', 'exclusive', X1, ['speed']), h);
      problem(await post(claim('e2', 'exclusive', X1, ['speed', 'brand'])), 'Conflict', 409, /e1/);
      await create(claim('e3', 'exclusive', X1, ['brand']), h);
      problem(await post(claim('i1', 'inclusive', { idPattern: '^urn:ngsi-ld:Vehicle:X' })), 'Conflict', 409);
      problem(await post(claim('r1', 'redirect', X1)), 'Conflict', 409);
      await create(claim('i2', 'inclusive', {}), h);
      await create(claim('a1', 'auxiliary', X1, ['speed']), h);
      await create(claim('i3', 'inclusive', { id: 'urn:ngsi-ld:Vehicle:X2' }), h);
      problem(
        await post(claim('e4', 'exclusive', { id: 'urn:ngsi-ld:Vehicle:X2' }, ['speed'])),
        'Conflict',
        409,
        /i3/,
      );
      problem(
        await api(
          'PATCH',
          `/csourceRegistrations/${enc(`${REG}e3`)}`,
          { information: claim('', '', X1, ['speed']).information },
          h,
        ),
        'Conflict',
        409,
      );
      // Once e1 is gone, its attribute is free.
      assert.equal(
        (await api('DELETE', `/csourceRegistrations/${enc(`${REG}e1`)}`, undefined, h)).statusCode,
        204,
      );
      await create(claim('e2', 'exclusive', X1, ['speed']), h);
      // An expired exclusive registration holds nothing.
      await sql`update twin.csource_registrations set expires_at = now() - interval '1 second'
        where tenant = 'excl' and id = ${`${REG}e2`}`.execute(t.database.db);
      await create(claim('e5', 'exclusive', X1, ['speed']), h);
    });

    it('audits each write once and announces it; refused writes leave no trace', async () => {
      const h = tenant('audit');
      const id = `${REG}aud`;
      const url = `/csourceRegistrations/${enc(id)}`;
      await create(body('aud'), h);
      assert.equal((await api('PATCH', url, { description: 'd' }, h)).statusCode, 204);
      problem(await api('PATCH', url, { mode: 'sometimes' }, h), 'BadRequestData', 400);
      problem(await api('POST', '/csourceRegistrations', body('aud'), h), 'AlreadyExists', 409);
      assert.equal((await api('DELETE', url, undefined, h)).statusCode, 204);
      problem(await api('DELETE', url, undefined, h), 'ResourceNotFound', 404);
      assert.deepEqual(await trail(id), {
        audit: ['twin.csource.create', 'twin.csource.delete', 'twin.csource.update'],
        events: ['twin.csource.created', 'twin.csource.updated', 'twin.csource.deleted'],
      });
      const { rows } = await sql<{ payload: { tenant: string; mode: string; types: string[] } }>`
        select payload from kernel.outbox where topic = 'twin.csource.created' and payload ->> 'id' = ${id}`.execute(
        t.database.db,
      );
      assert.deepEqual(rows[0]?.payload, {
        tenant: 'audit',
        id,
        mode: 'inclusive',
        types: [`${VOCAB}Vehicle`],
      });
    });
  });

  describe(`NGSI-LD context source registrations, secured access, on ${engine.name}`, () => {
    let t: TestDatabase;
    let p: Platform;

    before(async () => {
      t = await engine.open();
      p = await startTestPlatform(t, { env: { TWIN_ACCESS: 'secured' } });
    });
    after(async () => {
      await p.stop();
      await t.dispose();
    });

    const token = async (username: string): Promise<string> =>
      (await signIn(p, username)).authorization.slice('Bearer '.length);
    const api = async (
      who: string | undefined,
      method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
      url: string,
      payload?: unknown,
    ) => {
      const headers: Record<string, string> = payload === undefined ? {} : { ...JSON_CT };
      if (who) headers['authorization'] = `Bearer ${await token(who)}`;
      return p.http.inject({
        method,
        url: `/ngsi-ld/v1${url}`,
        headers,
        ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }),
      });
    };
    const typeOf = (res: { body: string }) => (JSON.parse(res.body) as { type: string }).type;
    const url = `/csourceRegistrations/${enc(`${REG}sec`)}`;
    const count = async () => {
      const { rows } = await sql<{
        n: number;
      }>`select count(*)::int as n from twin.csource_registrations`.execute(t.database.db);
      return rows[0]?.n;
    };

    it('refuses anonymous callers with 401, reads and writes alike', async () => {
      for (const [method, path, payload] of [
        ['GET', '/csourceRegistrations', undefined],
        ['GET', url, undefined],
        ['POST', '/csourceRegistrations', body('sec')],
        ['PATCH', url, { description: 'x' }],
        ['DELETE', url, undefined],
      ] as const) {
        const res = await api(undefined, method, path, payload);
        assert.equal(res.statusCode, 401, `${method} ${path} ${res.body}`);
        assert.equal(typeOf(res), `${ERR}Unauthorized`);
      }
      assert.equal(await count(), 0);
    });

    it('lets a twin administrator write; others get 403 (audited as denied) and change nothing', async () => {
      const refused = await api('baoshan-ops', 'POST', '/csourceRegistrations', body('sec'));
      assert.equal(refused.statusCode, 403, refused.body);
      assert.equal(typeOf(refused), `${ERR}Forbidden`);
      assert.equal(await count(), 0);
      const full = { ...FULL, id: `${REG}sec` };
      assert.equal((await api('admin', 'POST', '/csourceRegistrations', full)).statusCode, 201);
      assert.equal((await api('baoshan-ops', 'PATCH', url, { description: 'x' })).statusCode, 403);
      assert.equal((await api('baoshan-ops', 'DELETE', url)).statusCode, 403);
      // Any signed-in caller reads; only administrators see contextSourceInfo (it may hold credentials).
      const read = await api('citizen', 'GET', url);
      assert.equal(read.statusCode, 200, read.body);
      const r = read.json<Record<string, unknown>>();
      assert.equal(r['description'], FULL.description);
      assert.equal(r['contextSourceInfo'], undefined);
      const list = await api('baoshan-ops', 'GET', '/csourceRegistrations');
      assert.deepEqual(
        list.json<{ id: string }[]>().map((x) => x.id),
        [`${REG}sec`],
      );
      const adminRead = (await api('admin', 'GET', url)).json<Record<string, unknown>>();
      assert.deepEqual(adminRead['contextSourceInfo'], FULL.contextSourceInfo);
      assert.equal((await api('admin', 'PATCH', url, { description: 'changed' })).statusCode, 204);
      assert.equal((await api('admin', 'DELETE', url)).statusCode, 204);
      assert.equal(await count(), 0);
      const { rows } = await sql<{ action: string; outcome: string; actor_kind: string }>`
        select action, outcome, actor_kind from trust.audit_queue where resource_type = 'ngsi-ld-csource-registration'
        union all
        select action, outcome, actor_kind from trust.audit_records where resource_type = 'ngsi-ld-csource-registration'`.execute(
        t.database.db,
      );
      const tally = (outcome: string) =>
        rows
          .filter((x) => x.outcome === outcome)
          .map((x) => x.action)
          .sort();
      assert.deepEqual(tally('success'), [
        'twin.csource.create',
        'twin.csource.delete',
        'twin.csource.update',
      ]);
      assert.deepEqual(tally('denied'), [
        'twin.csource.create',
        'twin.csource.delete',
        'twin.csource.update',
      ]);
      assert.ok(rows.every((x) => x.actor_kind === 'user'));
    });
  });
}
