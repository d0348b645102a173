/**
 * The NGSI-LD API (ETSI GS CIM 009 v1.8) under `/ngsi-ld/v1`: thin routes over the twin services,
 * in a Fastify scope of their own with the NGSI-LD body parsers (JSON and JSON-LD, strict UTF-8),
 * content negotiation (JSON, JSON-LD, GeoJSON), the `@context` rules of §6.3.5, the
 * `NGSILD-Tenant` header, and errors as NGSI-LD ProblemDetails.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { HttpServer } from '../kernel/index.ts';
import { callContext, SECURED } from '../trust/index.ts';
import { authorizeAdmin } from './access.ts';
import { attributeDetails, attributeList, typeInformation, typeList } from './discovery.service.ts';
import { clip, type Terms } from './entity.model.ts';
import {
  specFromBody,
  specFromQuery,
  runQuery,
  joinFor,
  parseOptions,
  param,
  type QuerySpec,
} from './entity.query.ts';
import { renderEntity, toFeature, type EntityRecord, type RenderOptions } from './entity.render.ts';
import {
  appendAttributes,
  batchOperation,
  createEntity,
  deleteAttribute,
  LOCATION,
  mergeEntity,
  patchAttribute,
  removeEntity,
  replaceAttribute,
  replaceEntity,
  retrieveEntity,
  updateAttributes,
  type BatchKind,
  type TwinCall,
  type UpdateResult,
} from './entity.service.ts';
import { NgsiError } from './errors.ts';
import type { LdContext } from './ldcontext.ts';
import {
  GEO_TYPE,
  JSON_TYPE,
  LD_TYPE,
  negotiate,
  NGSI_PREFIX,
  pageUrl,
  params,
  parseJsonBody,
  sendBody,
  sendNgsiError,
  twinCall,
  withoutContext,
  type NgsiRuntime,
} from './ngsi.http.ts';
import { registerContextRoutes } from './contexts.routes.ts';
import { registerCsourceRoutes } from './csource.routes.ts';
import { registerTemporalRoutes } from './temporal.routes.ts';
import { registerSubscriptionRoutes } from './subscription.routes.ts';

/** Render options from a query spec (or retrieve parameters). */
function renderOptions(
  spec: Pick<QuerySpec, 'format' | 'sysAttrs' | 'lang' | 'attrs' | 'pick' | 'omit'>,
  terms: Terms,
): RenderOptions {
  const expand = (names: string[] | undefined, special: boolean) =>
    names === undefined
      ? undefined
      : new Set(
          names.filter((n) => !special || !['id', 'type', 'scope'].includes(n)).map((n) => terms.expand(n)),
        );
  const keep = spec.pick ? expand(spec.pick, true) : expand(spec.attrs, false);
  return {
    format: spec.format,
    sysAttrs: spec.sysAttrs,
    lang: spec.lang,
    keepAttrs: keep,
    dropAttrs: expand(spec.omit, true),
    keepId: spec.pick ? spec.pick.includes('id') : !spec.omit?.includes('id'),
    keepType: spec.pick ? spec.pick.includes('type') : !spec.omit?.includes('type'),
    keepScope: spec.pick ? spec.pick.includes('scope') : !spec.omit?.includes('scope'),
  };
}

const entityPath = (id: string) => `${NGSI_PREFIX}/entities/${encodeURIComponent(id)}`;

function sendUpdateResult(reply: FastifyReply, result: UpdateResult): FastifyReply {
  if (result.notUpdated.length === 0) return reply.code(204).send();
  return reply.code(207).type(JSON_TYPE).send(JSON.stringify(result));
}

const QUERY_DESCRIPTION =
  'NGSI-LD query parameters (join, joinLevel, id, idPattern, type, attrs, pick, omit, q, georel, geometry, coordinates, geoproperty, geometryProperty, scopeQ, lang, limit, offset, count, options, format; `after` continues a page by keyset)';

export { NGSI_PREFIX };

/** Registers the NGSI-LD API. */
export async function registerNgsiRoutes(app: HttpServer, rt: NgsiRuntime): Promise<void> {
  await app.register(
    async (plain) => {
      const scope = plain.withTypeProvider<TypeBoxTypeProvider>();
      // NGSI-LD bodies: JSON or JSON-LD (and merge-patch for PATCH), strictly UTF-8.
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser(
        [JSON_TYPE, LD_TYPE, 'application/merge-patch+json'],
        { parseAs: 'buffer', bodyLimit: rt.bodyLimitBytes },
        (_request, body: Buffer, done) => {
          try {
            done(null, parseJsonBody(body));
          } catch (e) {
            done(e as Error, undefined);
          }
        },
      );
      scope.setErrorHandler((error, request, reply) => sendNgsiError(request, reply, error));
      scope.setNotFoundHandler((request, reply) =>
        sendNgsiError(
          request,
          reply,
          new NgsiError(
            'ResourceNotFound',
            `No endpoint ${request.method} ${request.url.split('?')[0] ?? ''}`,
          ),
        ),
      );

      const doc = (summary: string, extra: Record<string, unknown> = {}) => ({
        tags: ['ngsi-ld'],
        summary,
        security: [...SECURED, {}],
        ...extra,
      });
      const looseQuery = Type.Record(Type.String(), Type.Unknown(), { description: QUERY_DESCRIPTION });
      const idParam = Type.Object({ entityId: Type.String({ maxLength: 2048 }) });
      const attrParam = Type.Object({
        entityId: Type.String({ maxLength: 2048 }),
        attrId: Type.String({ maxLength: 2048 }),
      });

      // --- Entities ---------------------------------------------------------------------------
      scope.post('/entities', { schema: doc('Create entity (§5.6.1)') }, async (request, reply) => {
        const tc = await twinCall(rt, request);
        const id = await createEntity(rt, tc, withoutContext(request.body));
        if (tc.tenant !== '') void reply.header('ngsild-tenant', tc.tenant);
        return reply.code(201).header('location', entityPath(id)).send();
      });

      scope.get(
        '/entities',
        { schema: doc('Query entities (§5.7.2)', { querystring: looseQuery }) },
        async (request, reply) => {
          const media = negotiate(request, { geo: true });
          const tc = await twinCall(rt, request);
          const spec = specFromQuery(request.query as Record<string, unknown>);
          return sendQuery(rt, request, reply, tc, spec, media);
        },
      );

      scope.get(
        '/entities/:entityId',
        { schema: doc('Retrieve entity (§5.7.1)', { params: idParam, querystring: looseQuery }) },
        async (request, reply) => {
          const media = negotiate(request, { geo: true });
          const tc = await twinCall(rt, request);
          const query = request.query as Record<string, unknown>;
          const spec = specFromQuery({ ...query, limit: undefined, offset: undefined });
          const e = await retrieveEntity(rt, tc, params(request).entityId);
          const typeFilter = param(query, 'type');
          if (typeFilter !== undefined) {
            const wanted = typeFilter.split(',').map((t) => tc.terms.expand(t.trim()));
            if (!wanted.some((t) => e.types.includes(t)))
              throw new NgsiError('ResourceNotFound', `No entity ${clip(e.id)} of type ${clip(typeFilter)}`);
          }
          const joined = await joinFor(rt, tc, spec, [e]);
          const options = {
            ...renderOptions(spec, tc.terms),
            inline: joined.inline,
            joinLevel: spec.joinLevel,
          };
          const all = [e, ...joined.extra];
          const rendered = all.map((x) => renderEntity(x, tc.terms, options));
          const geometry = geometryIri(tc.terms, spec);
          if (media === GEO_TYPE) {
            const features = all.map((x, i) =>
              toFeature(x, rendered[i] as Record<string, unknown>, geometry),
            );
            return sendBody(
              reply,
              media,
              tc.context,
              spec.join === 'flat' ? { type: 'FeatureCollection', features } : features[0],
            );
          }
          // join=flat answers the entity followed by the entities it links to.
          return sendBody(reply, media, tc.context, spec.join === 'flat' ? rendered : rendered[0]);
        },
      );

      scope.delete(
        '/entities/:entityId',
        { schema: doc('Delete entity (§5.6.6)', { params: idParam }) },
        async (request, reply) => {
          const tc = await twinCall(rt, request);
          await removeEntity(rt, tc, params(request).entityId);
          return reply.code(204).send();
        },
      );

      scope.put(
        '/entities/:entityId',
        { schema: doc('Replace entity (§5.6.18)', { params: idParam }) },
        async (request, reply) => {
          const tc = await twinCall(rt, request);
          await replaceEntity(rt, tc, params(request).entityId, withoutContext(request.body));
          return reply.code(204).send();
        },
      );

      scope.patch(
        '/entities/:entityId',
        { schema: doc('Merge entity (§5.6.17)', { params: idParam }) },
        async (request, reply) => {
          const tc = await twinCall(rt, request);
          await mergeEntity(rt, tc, params(request).entityId, withoutContext(request.body));
          return reply.code(204).send();
        },
      );

      // --- Attributes -------------------------------------------------------------------------
      scope.post(
        '/entities/:entityId/attrs',
        { schema: doc('Append entity attributes (§5.6.3)', { params: idParam, querystring: looseQuery }) },
        async (request, reply) => {
          const tc = await twinCall(rt, request);
          const { flags } = parseOptions(request.query as Record<string, unknown>);
          const result = await appendAttributes(
            rt,
            tc,
            params(request).entityId,
            withoutContext(request.body),
            {
              noOverwrite: flags.has('noOverwrite'),
            },
          );
          return sendUpdateResult(reply, result);
        },
      );

      scope.patch(
        '/entities/:entityId/attrs',
        { schema: doc('Update entity attributes (§5.6.2)', { params: idParam }) },
        async (request, reply) => {
          const tc = await twinCall(rt, request);
          const result = await updateAttributes(
            rt,
            tc,
            params(request).entityId,
            withoutContext(request.body),
          );
          return sendUpdateResult(reply, result);
        },
      );

      scope.patch(
        '/entities/:entityId/attrs/:attrId',
        { schema: doc('Partial attribute update (§5.6.4)', { params: attrParam }) },
        async (request, reply) => {
          const tc = await twinCall(rt, request);
          await patchAttribute(
            rt,
            tc,
            params(request).entityId,
            params(request).attrId,
            withoutContext(request.body),
          );
          return reply.code(204).send();
        },
      );

      scope.put(
        '/entities/:entityId/attrs/:attrId',
        { schema: doc('Replace attribute (§5.6.19)', { params: attrParam }) },
        async (request, reply) => {
          const tc = await twinCall(rt, request);
          await replaceAttribute(
            rt,
            tc,
            params(request).entityId,
            params(request).attrId,
            withoutContext(request.body),
          );
          return reply.code(204).send();
        },
      );

      scope.delete(
        '/entities/:entityId/attrs/:attrId',
        { schema: doc('Delete attribute (§5.6.5)', { params: attrParam, querystring: looseQuery }) },
        async (request, reply) => {
          const tc = await twinCall(rt, request);
          const query = request.query as Record<string, unknown>;
          const deleteAll = param(query, 'deleteAll');
          if (deleteAll !== undefined && deleteAll !== 'true' && deleteAll !== 'false')
            throw new NgsiError('BadRequestData', 'deleteAll: true or false');
          await deleteAttribute(rt, tc, params(request).entityId, params(request).attrId, {
            datasetId: param(query, 'datasetId'),
            deleteAll: deleteAll === 'true',
          });
          return reply.code(204).send();
        },
      );

      // --- Batch operations -------------------------------------------------------------------
      const batch = (kind: BatchKind, summary: string) =>
        scope.post(
          `/entityOperations/${kind}`,
          { schema: doc(summary, { querystring: looseQuery }) },
          async (request, reply) => {
            const tc = await twinCall(rt, request);
            const { flags } = parseOptions(request.query as Record<string, unknown>);
            if (flags.has('update') && flags.has('replace'))
              throw new NgsiError('BadRequestData', 'options: update and replace exclude each other');
            const body = Array.isArray(request.body) ? request.body.map(withoutContext) : request.body;
            const result = await batchOperation(rt, tc, kind, body, {
              upsertMode: flags.has('update') ? 'update' : 'replace',
              noOverwrite: flags.has('noOverwrite'),
              ...(tc.memberTerms ? { memberTerms: tc.memberTerms } : {}),
            });
            if (result.errors.length > 0)
              return reply
                .code(207)
                .type(JSON_TYPE)
                .send(JSON.stringify({ success: result.success, errors: result.errors }));
            if (kind === 'create')
              return reply.code(201).type(JSON_TYPE).send(JSON.stringify(result.success));
            if (kind === 'upsert' && result.created.length > 0)
              return reply.code(201).type(JSON_TYPE).send(JSON.stringify(result.created));
            return reply.code(204).send();
          },
        );
      batch('create', 'Batch entity creation (§5.6.7)');
      batch('upsert', 'Batch entity upsert (§5.6.8)');
      batch('update', 'Batch entity update (§5.6.9)');
      batch('delete', 'Batch entity deletion (§5.6.10)');
      batch('merge', 'Batch entity merge (§5.6.20)');

      scope.post(
        '/entityOperations/query',
        { schema: doc('Query entities by POST (§5.7.2, §6.23)', { querystring: looseQuery }) },
        async (request, reply) => {
          const media = negotiate(request, { geo: true });
          const tc = await twinCall(rt, request);
          const spec = specFromBody(withoutContext(request.body), request.query as Record<string, unknown>);
          return sendQuery(rt, request, reply, tc, spec, media);
        },
      );

      // --- Discovery (§5.7.5–5.7.8) ------------------------------------------------------------
      scope.get(
        '/types',
        { schema: doc('Retrieve available entity types (§5.7.5, §5.7.6)', { querystring: looseQuery }) },
        async (request, reply) => {
          const media = negotiate(request, { geo: false });
          const tc = await twinCall(rt, request);
          const details = param(request.query as Record<string, unknown>, 'details') === 'true';
          return sendBody(reply, media, tc.context, await typeList(rt, tc, details));
        },
      );
      scope.get(
        '/types/:type',
        {
          schema: doc('Details of an entity type (§5.7.7)', { params: Type.Object({ type: Type.String() }) }),
        },
        async (request, reply) => {
          const media = negotiate(request, { geo: false });
          const tc = await twinCall(rt, request);
          return sendBody(reply, media, tc.context, await typeInformation(rt, tc, params(request).type));
        },
      );
      scope.get(
        '/attributes',
        { schema: doc('Retrieve available attributes (§5.7.8, §5.7.9)', { querystring: looseQuery }) },
        async (request, reply) => {
          const media = negotiate(request, { geo: false });
          const tc = await twinCall(rt, request);
          const details = param(request.query as Record<string, unknown>, 'details') === 'true';
          return sendBody(reply, media, tc.context, await attributeList(rt, tc, details));
        },
      );
      scope.get(
        '/attributes/:attrId',
        {
          schema: doc('Details of an attribute (§5.7.10)', {
            params: Type.Object({ attrId: Type.String() }),
          }),
        },
        async (request, reply) => {
          const media = negotiate(request, { geo: false });
          const tc = await twinCall(rt, request);
          return sendBody(reply, media, tc.context, await attributeDetails(rt, tc, params(request).attrId));
        },
      );

      registerContextRoutes(scope as unknown as HttpServer, rt, {
        admin: async (request) => {
          const call = await callContext(rt.trust, request);
          authorizeAdmin(rt.access, call);
          return call;
        },
        doc,
      });
      registerCsourceRoutes(scope as unknown as HttpServer, rt, { doc });
      registerTemporalRoutes(scope as unknown as HttpServer, rt, { doc });
      registerSubscriptionRoutes(scope as unknown as HttpServer, rt, { doc });
    },
    { prefix: NGSI_PREFIX },
  );
}

function geometryIri(terms: Terms, spec: Pick<QuerySpec, 'geometryProperty'>): string {
  return spec.geometryProperty === undefined ? LOCATION : terms.expand(spec.geometryProperty);
}

/** Runs a query and sends the page with the count header and pagination links. */
async function sendQuery(
  rt: NgsiRuntime,
  request: FastifyRequest,
  reply: FastifyReply,
  tc: TwinCall & { context: LdContext },
  spec: QuerySpec,
  media: string,
): Promise<FastifyReply> {
  const page = await runQuery(rt, tc, spec);
  if (page.count !== undefined) void reply.header('ngsild-results-count', String(page.count));
  const links: string[] = [];
  if (page.lastId !== undefined && request.method === 'GET')
    links.push(
      `<${pageUrl(request, { after: page.lastId, offset: String(spec.offset + spec.limit) })}>; rel="next"`,
    );
  if (spec.offset > 0 && spec.after === undefined && request.method === 'GET')
    links.push(
      `<${pageUrl(request, { offset: String(Math.max(0, spec.offset - spec.limit)), after: undefined })}>; rel="prev"`,
    );
  const joined = await joinFor(rt, tc, spec, page.entities);
  const options = { ...renderOptions(spec, tc.terms), inline: joined.inline, joinLevel: spec.joinLevel };
  const all: EntityRecord[] = [...page.entities, ...joined.extra];
  const rendered = all.map((e) => renderEntity(e, tc.terms, options));
  const body =
    media === GEO_TYPE
      ? {
          type: 'FeatureCollection',
          features: all.map((e, i) =>
            toFeature(e, rendered[i] as Record<string, unknown>, geometryIri(tc.terms, spec)),
          ),
        }
      : rendered;
  return sendBody(reply, media, tc.context, body, { links });
}
