/**
 * Areas API: reads are public (a city's administrative areas are public information); creating
 * and changing areas needs `areas.manage` over the parent's jurisdiction, and is audited.
 */
import { Type } from 'typebox';
import type { HttpServer } from '../kernel/index.ts';
import { Area, AreaCode, AreaCreate, AreaPatch, AREA_LEVELS, LocatedArea } from './areas.schema.ts';
import { childrenOf, createArea, descendantCounts, getArea, locate, updateArea } from './areas.service.ts';
import type { TrustRuntime } from './auth.service.ts';
import { callContext, SECURED } from './context.ts';

export function registerAreaRoutes(app: HttpServer, rt: TrustRuntime): void {
  const { database } = rt;
  app.post(
    '/api/v1/areas',
    {
      schema: {
        tags: ['areas'],
        summary: 'Create an area below an existing one (boundary inside the parent, not over siblings)',
        security: SECURED,
        body: AreaCreate,
        response: { 201: Area },
      },
    },
    async (request, reply) =>
      reply.code(201).send(await createArea(database, await callContext(rt, request), request.body)),
  );

  app.patch(
    '/api/v1/areas/:code',
    {
      schema: {
        tags: ['areas'],
        summary: 'Rename an area or replace its boundary',
        security: SECURED,
        params: Type.Object({ code: AreaCode }),
        body: AreaPatch,
        response: { 200: Area },
      },
    },
    async (request) =>
      updateArea(database, await callContext(rt, request), request.params.code, request.body),
  );

  app.get(
    '/api/v1/areas/locate',
    {
      schema: {
        tags: ['areas'],
        summary: 'The deepest area (down to the unit grid) covering a WGS-84 point',
        querystring: Type.Object({
          lon: Type.Number({ minimum: -180, maximum: 180 }),
          lat: Type.Number({ minimum: -90, maximum: 90 }),
        }),
        response: { 200: LocatedArea },
      },
    },
    (request) => locate(database, request.query),
  );

  app.get(
    '/api/v1/areas/:code',
    {
      schema: {
        tags: ['areas'],
        summary: 'One area, optionally with its boundary as GeoJSON',
        params: Type.Object({ code: AreaCode }),
        querystring: Type.Object({ geometry: Type.Boolean({ default: false }) }),
        response: { 200: Area },
      },
    },
    (request) => getArea(database, request.params.code, { geometry: request.query.geometry }),
  );

  app.get(
    '/api/v1/areas/:code/children',
    {
      schema: {
        tags: ['areas'],
        summary: 'The direct children of an area',
        params: Type.Object({ code: AreaCode }),
        response: { 200: Type.Array(Area) },
      },
    },
    (request) => childrenOf(database, request.params.code),
  );

  app.get(
    '/api/v1/areas/:code/counts',
    {
      schema: {
        tags: ['areas'],
        summary: 'How many areas of each level lie below an area',
        params: Type.Object({ code: AreaCode }),
        response: {
          200: Type.Object(Object.fromEntries(AREA_LEVELS.map((l) => [l, Type.Optional(Type.Integer())]))),
        },
      },
    },
    (request) => descendantCounts(database, request.params.code),
  );
}
