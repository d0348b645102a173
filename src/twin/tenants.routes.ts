/**
 * Native twin administration (twin.admin, always signed in): NGSI-LD tenants (GET/DELETE
 * /api/v1/twin/tenants) and a subscription's latest notifications with their delivery status.
 */
import { Type } from 'typebox';
import type { HttpServer } from '../kernel/index.ts';
import { callContext, SECURED, type TrustRuntime } from '../trust/index.ts';
import type { TwinRuntime } from './entity.service.ts';
import { subscriptionNotifications } from './subscription.service.ts';
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
  app.get(
    '/api/v1/twin/subscriptions/:id/notifications',
    {
      schema: {
        tags: ['twin'],
        summary: "A subscription's latest notifications (通知记录) with status, attempts and last error",
        security: SECURED,
        params: Type.Object({ id: Type.String({ maxLength: 2048 }) }),
        querystring: Type.Object({
          tenant: Type.String({ default: '', pattern: '^([A-Za-z0-9_-]{1,64})?$' }),
          limit: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }),
        }),
        response: {
          200: Type.Array(
            Type.Object({
              seq: Type.Integer(),
              status: Type.Union([Type.Literal('pending'), Type.Literal('sent'), Type.Literal('failed')]),
              attempts: Type.Integer({ minimum: 0 }),
              lastError: Type.Union([Type.String(), Type.Null()]),
              createdAt: Type.String({ format: 'date-time' }),
              sentAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
            }),
          ),
        },
      },
    },
    async (request) =>
      subscriptionNotifications(rt, await callContext(rt.trust, request), {
        tenant: request.query.tenant,
        id: request.params.id,
        limit: request.query.limit,
      }),
  );
}
