/** Native administration of NGSI-LD tenants: GET/DELETE /api/v1/twin/tenants (twin.admin, always signed in). */
import { Type } from 'typebox';
import type { HttpServer } from '../kernel/index.ts';
import { callContext, SECURED, type TrustRuntime } from '../trust/index.ts';
import type { TwinRuntime } from './entity.service.ts';
import { removeTenant, tenants } from './tenants.service.ts';

const Tenant = Type.Object({
  name: Type.String({ description: "The NGSILD-Tenant value ('' is the default tenant)" }),
  createdAt: Type.String({ format: 'date-time' }),
  entities: Type.Integer({ minimum: 0 }),
});

export function registerTenantRoutes(app: HttpServer, rt: TwinRuntime & { trust: TrustRuntime }): void {
  app.get(
    '/api/v1/twin/tenants',
    {
      schema: {
        tags: ['twin'],
        summary: 'List NGSI-LD tenants (租户) with their entity counts',
        security: SECURED,
        response: { 200: Type.Array(Tenant) },
      },
    },
    async (request) => tenants(rt, await callContext(rt.trust, request)),
  );
  app.delete(
    '/api/v1/twin/tenants/:name',
    {
      schema: {
        tags: ['twin'],
        summary: 'Drop an NGSI-LD tenant and all its entities',
        security: SECURED,
        params: Type.Object({ name: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) }),
        response: { 200: Type.Object({ name: Type.String(), entitiesRemoved: Type.Integer() }) },
      },
    },
    async (request) => ({
      name: request.params.name,
      entitiesRemoved: await removeTenant(rt, await callContext(rt.trust, request), request.params.name),
    }),
  );
}
