/** Areas API: read-only, public (a city's administrative areas are public information). */
import { Type } from 'typebox';
import type { Database, HttpServer } from '../kernel/index.ts';
import { Area, AreaCode, AREA_LEVELS, LocatedArea } from './areas.schema.ts';
import { childrenOf, descendantCounts, getArea, locate } from './areas.service.ts';

export function registerAreaRoutes(app: HttpServer, database: Database): void {
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
