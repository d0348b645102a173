/** The `/ngsi-ld/v1/csourceRegistrations` API (§5.9, §5.10, §6.8–6.9): thin routes over csource.service.ts. */
import { Type } from 'typebox';
import type { HttpServer } from '../kernel/index.ts';
import {
  createRegistration,
  parseRegistrationQuery,
  patchRegistration,
  presentRegistration,
  queryRegistrationPage,
  removeRegistration,
  retrieveRegistration,
} from './csource.service.ts';
import { parseOptions } from './entity.query.ts';
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

const PATH = '/csourceRegistrations';

const registrationPath = (id: string) => `${NGSI_PREFIX}${PATH}/${encodeURIComponent(id)}`;

/** Path parameters (their schema is the route's `params`). */
const registrationId = (params: unknown) => (params as { registrationId: string }).registrationId;

/** Registers the context source registration routes in the NGSI-LD scope. */
export function registerCsourceRoutes(scope: HttpServer, rt: NgsiRuntime, helpers: { doc: RouteDoc }): void {
  const { doc } = helpers;
  const idParam = Type.Object({ registrationId: Type.String({ maxLength: 2048 }) });
  const looseQuery = Type.Record(Type.String(), Type.Unknown(), {
    description:
      'id, type, idPattern, attrs, georel, geometry, coordinates, geoproperty, limit, offset, count, options=sysAttrs (q and csf: OperationNotSupported)',
  });

  scope.post(PATH, { schema: doc('Register context source (§5.9.2)') }, async (request, reply) => {
    const tc = await twinCall(rt, request);
    const id = await createRegistration(rt, tc, withoutContext(request.body));
    if (tc.tenant !== '') void reply.header('ngsild-tenant', tc.tenant);
    return reply.code(201).header('location', registrationPath(id)).send();
  });

  scope.get(
    PATH,
    { schema: doc('Query context source registrations (§5.10.2)', { querystring: looseQuery }) },
    async (request, reply) => {
      const media = negotiate(request, { geo: false });
      const tc = await twinCall(rt, request);
      const spec = parseRegistrationQuery(request.query as Record<string, unknown>, tc.terms);
      const page = await queryRegistrationPage(rt, tc, spec);
      if (page.count !== undefined) void reply.header('ngsild-results-count', String(page.count));
      const links: string[] = [];
      if (page.registrations.length === spec.limit && spec.limit > 0)
        links.push(`<${pageUrl(request, { offset: String(spec.offset + spec.limit) })}>; rel="next"`);
      if (spec.offset > 0)
        links.push(
          `<${pageUrl(request, { offset: String(Math.max(0, spec.offset - spec.limit)) })}>; rel="prev"`,
        );
      const body = page.registrations.map((r) => presentRegistration(rt, tc, r, spec));
      return sendBody(reply, media, tc.context, body, { links });
    },
  );

  scope.get(
    `${PATH}/:registrationId`,
    {
      schema: doc('Retrieve context source registration (§5.10.1)', {
        params: idParam,
        querystring: looseQuery,
      }),
    },
    async (request, reply) => {
      const media = negotiate(request, { geo: false });
      const tc = await twinCall(rt, request);
      const { sysAttrs } = parseOptions(request.query as Record<string, unknown>);
      const found = await retrieveRegistration(rt, tc, registrationId(request.params));
      return sendBody(reply, media, tc.context, presentRegistration(rt, tc, found, { sysAttrs }));
    },
  );

  scope.patch(
    `${PATH}/:registrationId`,
    { schema: doc('Update context source registration (§5.9.3)', { params: idParam }) },
    async (request, reply) => {
      const tc = await twinCall(rt, request);
      await patchRegistration(rt, tc, registrationId(request.params), withoutContext(request.body));
      return reply.code(204).send();
    },
  );

  scope.delete(
    `${PATH}/:registrationId`,
    { schema: doc('Delete context source registration (§5.9.4)', { params: idParam }) },
    async (request, reply) => {
      const tc = await twinCall(rt, request);
      await removeRegistration(rt, tc, registrationId(request.params));
      return reply.code(204).send();
    },
  );
}
