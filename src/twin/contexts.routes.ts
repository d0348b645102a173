/** The `/ngsi-ld/v1/jsonldContexts` API (§5.13, §6.31–6.32): thin routes over contexts.service.ts. */
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { HttpServer } from '../kernel/index.ts';
import type { CallContext } from '../trust/index.ts';
import { addContext, deleteContext, getContext, listContexts } from './contexts.service.ts';
import type { NgsiRuntime, RouteDoc } from './ngsi.http.ts';

const PATH = '/jsonldContexts';

/** The absolute URL hosted contexts are served at, as this request reached us. */
const baseUrlOf = (request: FastifyRequest) => `${request.protocol}://${request.host}/ngsi-ld/v1${PATH}`;

export function registerContextRoutes(
  scope: HttpServer,
  rt: NgsiRuntime,
  helpers: {
    admin: (request: FastifyRequest) => Promise<CallContext>;
    doc: RouteDoc;
  },
): void {
  const { admin, doc } = helpers;
  const query = Type.Object({
    details: Type.Optional(Type.Boolean()),
    kind: Type.Optional(Type.String()),
    reload: Type.Optional(Type.Boolean()),
  });
  const idParam = Type.Object({ contextId: Type.String({ maxLength: 2048 }) });

  scope.post(PATH, { schema: doc('Add a hosted @context (§5.13.2)') }, async (request, reply) => {
    const call = await admin(request);
    const id = await addContext(rt.database, rt.contexts, call, request.body);
    return reply
      .code(201)
      .header('location', `/ngsi-ld/v1${PATH}/${encodeURIComponent(id)}`)
      .send();
  });

  scope.get(
    PATH,
    { schema: doc('List @contexts (§5.13.3)', { querystring: query }) },
    async (request, reply) => {
      const q = request.query as { details?: boolean; kind?: string };
      const list = await listContexts(rt.database, rt.contexts, baseUrlOf(request), q.kind);
      return reply.type('application/json').send(JSON.stringify(q.details ? list : list.map((c) => c.URL)));
    },
  );

  scope.get(
    `${PATH}/:contextId`,
    { schema: doc('Serve or describe an @context (§5.13.4)', { params: idParam, querystring: query }) },
    async (request, reply) => {
      const { contextId } = request.params as { contextId: string };
      const q = request.query as { details?: boolean };
      const found = await getContext(rt.database, rt.contexts, baseUrlOf(request), contextId);
      return reply
        .type(q.details ? 'application/json' : 'application/ld+json')
        .send(JSON.stringify(q.details ? found.info : found.document));
    },
  );

  scope.delete(
    `${PATH}/:contextId`,
    { schema: doc('Delete, evict or reload an @context (§5.13.5)', { params: idParam, querystring: query }) },
    async (request, reply) => {
      const call = await admin(request);
      const { contextId } = request.params as { contextId: string };
      const q = request.query as { reload?: boolean };
      await deleteContext(rt.database, rt.contexts, call, baseUrlOf(request), contextId, q.reload === true);
      return reply.code(204).send();
    },
  );
}
