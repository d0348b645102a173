/**
 * The NGSI-LD temporal API under `/ngsi-ld/v1/temporal` (ETSI GS CIM 009 v1.8 §5.6.11–16,
 * §5.7.3–4, §6.18–6.24): thin routes over the temporal service. An answer that holds only part of
 * an attribute's history in range is 206 with a `Content-Range` of the instants it covers.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { HttpServer } from '../kernel/index.ts';
import { isPlainObject } from './entity.model.ts';
import { param } from './entity.query.ts';
import { NgsiError } from './errors.ts';
import {
  negotiate,
  NGSI_PREFIX,
  pageUrl,
  sendBody,
  twinCall,
  withoutContext,
  type NgsiRuntime,
  type RouteDoc,
} from './ngsi.http.ts';
import { temporalQueryFrom } from './temporal.model.ts';
import {
  appendTemporal,
  patchTemporalInstance,
  queryTemporal,
  removeTemporal,
  removeTemporalAttribute,
  removeTemporalInstance,
  retrieveTemporal,
  upsertTemporal,
  type TemporalPage,
} from './temporal.service.ts';

const TEMPORAL_DESCRIPTION =
  'NGSI-LD temporal query parameters (id, idPattern, type, attrs, q, georel, geometry, coordinates, geoproperty, timerel, timeAt, endTimeAt, timeproperty, lastN, options=temporalValues|aggregatedValues|sysAttrs, aggrMethods, aggrPeriodDuration, limit, offset, after, count)';

const ids = (request: FastifyRequest) =>
  request.params as { entityId: string; attrId: string; instanceId: string };

/** Sends a temporal page: count header, next link, and 206 + Content-Range when instances were cut. */
function sendPage(
  request: FastifyRequest,
  reply: FastifyReply,
  media: string,
  context: Parameters<typeof sendBody>[2],
  page: TemporalPage,
  body: unknown,
  options: { offset: number; limit: number },
): FastifyReply {
  if (page.count !== undefined) void reply.header('ngsild-results-count', String(page.count));
  const links: string[] = [];
  if (page.lastId !== undefined && request.method === 'GET')
    links.push(
      `<${pageUrl(request, { after: page.lastId, offset: String(options.offset + options.limit) })}>; rel="next"`,
    );
  if (page.truncated) {
    void reply.code(206);
    void reply.header('content-range', `date-time ${page.truncated.from}-${page.truncated.to}/*`);
  }
  return sendBody(reply, media, context, body, { links });
}

/** POST /temporal/entityOperations/query body (§5.2.23 Query with temporalQ) → query parameters. */
function queryParamsFromBody(body: unknown, query: Record<string, unknown>): Record<string, unknown> {
  if (!isPlainObject(body)) throw new NgsiError('BadRequestData', 'The query must be a JSON object');
  if (body['type'] !== 'Query')
    throw new NgsiError('BadRequestData', 'type: a query document has type "Query"');
  const out: Record<string, unknown> = { ...query };
  const entities = body['entities'];
  if (entities !== undefined) {
    if (!Array.isArray(entities) || entities.length !== 1 || !isPlainObject(entities[0]))
      throw new NgsiError('BadRequestData', 'entities: one entity selector (id, idPattern, type)');
    for (const k of ['id', 'idPattern', 'type']) if (entities[0][k] !== undefined) out[k] = entities[0][k];
  }
  const list = (v: unknown) => (Array.isArray(v) ? v.join(',') : v);
  if (body['attrs'] !== undefined) out['attrs'] = list(body['attrs']);
  if (body['q'] !== undefined) out['q'] = body['q'];
  const geoQ = body['geoQ'];
  if (geoQ !== undefined) {
    if (!isPlainObject(geoQ)) throw new NgsiError('BadRequestData', 'geoQ: an object');
    for (const k of ['georel', 'geometry', 'geoproperty']) if (geoQ[k] !== undefined) out[k] = geoQ[k];
    if (geoQ['coordinates'] !== undefined) out['coordinates'] = JSON.stringify(geoQ['coordinates']);
  }
  const temporalQ = body['temporalQ'];
  if (temporalQ !== undefined) {
    if (!isPlainObject(temporalQ)) throw new NgsiError('BadRequestData', 'temporalQ: an object');
    for (const k of ['timerel', 'timeAt', 'endTimeAt', 'timeproperty', 'lastN']) {
      const v = temporalQ[k];
      if (v === undefined) continue;
      if (typeof v !== 'string' && typeof v !== 'number')
        throw new NgsiError('BadRequestData', `temporalQ.${k}: text or a number`);
      out[k] = String(v);
    }
  }
  for (const [k, v] of Object.entries(out))
    if (typeof v !== 'string' && !(Array.isArray(v) && v.every((x) => typeof x === 'string')))
      throw new NgsiError('BadRequestData', `${k}: expected text`);
  return out;
}

/** Registers the temporal API inside the NGSI-LD scope. */
export function registerTemporalRoutes(scope: HttpServer, rt: NgsiRuntime, helpers: { doc: RouteDoc }): void {
  const { doc } = helpers;
  const looseQuery = Type.Record(Type.String(), Type.Unknown(), { description: TEMPORAL_DESCRIPTION });
  const idParam = Type.Object({ entityId: Type.String({ maxLength: 2048 }) });
  const attrParam = Type.Object({
    entityId: Type.String({ maxLength: 2048 }),
    attrId: Type.String({ maxLength: 2048 }),
  });
  const instanceParam = Type.Object({
    entityId: Type.String({ maxLength: 2048 }),
    attrId: Type.String({ maxLength: 2048 }),
    instanceId: Type.String({ maxLength: 2048 }),
  });

  const query = async (request: FastifyRequest, reply: FastifyReply, params: Record<string, unknown>) => {
    const media = negotiate(request, { geo: false });
    const tc = await twinCall(rt, request);
    const spec = temporalQueryFrom(params, { single: false });
    const page = await queryTemporal(rt, tc, spec);
    return sendPage(request, reply, media, tc.context, page, page.entities, spec);
  };

  scope.get(
    '/temporal/entities',
    { schema: doc('Query temporal evolution of entities (§5.7.4)', { querystring: looseQuery }) },
    (request, reply) => query(request, reply, request.query as Record<string, unknown>),
  );

  scope.post(
    '/temporal/entityOperations/query',
    {
      schema: doc('Query temporal evolution of entities by POST (§5.7.4, §6.24)', {
        querystring: looseQuery,
      }),
    },
    (request, reply) =>
      query(
        request,
        reply,
        queryParamsFromBody(withoutContext(request.body), request.query as Record<string, unknown>),
      ),
  );

  scope.get(
    '/temporal/entities/:entityId',
    {
      schema: doc('Retrieve temporal evolution of an entity (§5.7.3)', {
        params: idParam,
        querystring: looseQuery,
      }),
    },
    async (request, reply) => {
      const media = negotiate(request, { geo: false });
      const tc = await twinCall(rt, request);
      const raw = request.query as Record<string, unknown>;
      for (const k of ['id', 'idPattern', 'type', 'q', 'georel', 'limit', 'offset', 'after', 'count'])
        if (raw[k] !== undefined)
          throw new NgsiError('BadRequestData', `${k}: not a parameter of a temporal retrieval`);
      const spec = temporalQueryFrom(raw, { single: true });
      const page = await retrieveTemporal(rt, tc, ids(request).entityId, spec);
      return sendPage(request, reply, media, tc.context, page, page.entities[0], spec);
    },
  );

  scope.post(
    '/temporal/entities',
    { schema: doc('Create or update temporal representation of an entity (§5.6.11)') },
    async (request, reply) => {
      const tc = await twinCall(rt, request);
      const body = withoutContext(request.body);
      const created = await upsertTemporal(rt, tc, body);
      if (!created) return reply.code(204).send();
      const id = isPlainObject(body) ? String(body['id'] ?? body['@id']) : '';
      return reply
        .code(201)
        .header('location', `${NGSI_PREFIX}/temporal/entities/${encodeURIComponent(id)}`)
        .send();
    },
  );

  scope.delete(
    '/temporal/entities/:entityId',
    { schema: doc('Delete temporal representation of an entity (§5.6.16)', { params: idParam }) },
    async (request, reply) => {
      const tc = await twinCall(rt, request);
      await removeTemporal(rt, tc, ids(request).entityId);
      return reply.code(204).send();
    },
  );

  scope.post(
    '/temporal/entities/:entityId/attrs',
    { schema: doc('Add attributes to temporal representation of an entity (§5.6.12)', { params: idParam }) },
    async (request, reply) => {
      const tc = await twinCall(rt, request);
      await appendTemporal(rt, tc, ids(request).entityId, withoutContext(request.body));
      return reply.code(204).send();
    },
  );

  scope.delete(
    '/temporal/entities/:entityId/attrs/:attrId',
    {
      schema: doc('Delete attribute from temporal representation of an entity (§5.6.13)', {
        params: attrParam,
        querystring: looseQuery,
      }),
    },
    async (request, reply) => {
      const tc = await twinCall(rt, request);
      const q = request.query as Record<string, unknown>;
      const deleteAll = param(q, 'deleteAll');
      if (deleteAll !== undefined && deleteAll !== 'true' && deleteAll !== 'false')
        throw new NgsiError('BadRequestData', 'deleteAll: true or false');
      await removeTemporalAttribute(rt, tc, ids(request).entityId, ids(request).attrId, {
        datasetId: param(q, 'datasetId'),
        deleteAll: deleteAll === 'true',
      });
      return reply.code(204).send();
    },
  );

  scope.patch(
    '/temporal/entities/:entityId/attrs/:attrId/:instanceId',
    {
      schema: doc('Modify attribute instance in temporal representation (§5.6.14)', {
        params: instanceParam,
      }),
    },
    async (request, reply) => {
      const tc = await twinCall(rt, request);
      const p = ids(request);
      await patchTemporalInstance(rt, tc, p.entityId, p.attrId, p.instanceId, withoutContext(request.body));
      return reply.code(204).send();
    },
  );

  scope.delete(
    '/temporal/entities/:entityId/attrs/:attrId/:instanceId',
    {
      schema: doc('Delete attribute instance from temporal representation (§5.6.15)', {
        params: instanceParam,
      }),
    },
    async (request, reply) => {
      const tc = await twinCall(rt, request);
      const p = ids(request);
      await removeTemporalInstance(rt, tc, p.entityId, p.attrId, p.instanceId);
      return reply.code(204).send();
    },
  );
}
