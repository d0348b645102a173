/** Area (区域) schemas: the single source of validation, types and OpenAPI for the areas API. */
import { Type, type Static } from 'typebox';

export const AREA_LEVELS = ['city', 'district', 'street', 'community', 'grid'] as const;
export type AreaLevel = (typeof AREA_LEVELS)[number];

export const AreaCode = Type.String({
  pattern: '^[0-9]{6}([0-9]{3}){0,3}$',
  description: 'Area code: 6 digits (city, district; GB/T 2260), 9 (street), 12 (community), 15 (grid)',
  examples: ['310113', '310113001'],
});

export const Area = Type.Object({
  code: Type.String(),
  name: Type.String(),
  level: Type.Enum([...AREA_LEVELS]),
  parentCode: Type.Union([Type.String(), Type.Null()]),
  /** Codes from the city down to this area. */
  path: Type.Array(Type.String()),
  synthetic: Type.Boolean({ description: 'The area itself is generated demo data' }),
  geometrySynthetic: Type.Boolean({ description: 'The boundary is generated (no public boundary exists)' }),
  centroid: Type.Union([Type.Tuple([Type.Number(), Type.Number()]), Type.Null()], {
    description: '[longitude, latitude] of a point inside the area',
  }),
  areaKm2: Type.Union([Type.Number(), Type.Null()]),
  geometry: Type.Optional(Type.Unknown({ description: 'GeoJSON MultiPolygon (when geometry=true)' })),
});
export type Area = Static<typeof Area>;

export const LocatedArea = Type.Object({
  area: Area,
  /** The area's ancestors from the city down, then the area itself. */
  chain: Type.Array(Type.Object({ code: Type.String(), name: Type.String(), level: Type.String() })),
});
export type LocatedArea = Static<typeof LocatedArea>;

const Position = Type.Tuple([
  Type.Number({ minimum: -180, maximum: 180 }),
  Type.Number({ minimum: -90, maximum: 90 }),
]);
const Ring = Type.Array(Position, { minItems: 4, maxItems: 100_000 });
const PolygonCoordinates = Type.Array(Ring, { minItems: 1, maxItems: 1_000 });

/** A GeoJSON Polygon or MultiPolygon in WGS-84 (longitude, latitude). */
export const AreaGeometry = Type.Union([
  Type.Object(
    { type: Type.Literal('Polygon'), coordinates: PolygonCoordinates },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('MultiPolygon'),
      coordinates: Type.Array(PolygonCoordinates, { minItems: 1, maxItems: 1_000 }),
    },
    { additionalProperties: false },
  ),
]);
export type AreaGeometry = Static<typeof AreaGeometry>;

export const AreaCreate = Type.Object(
  {
    code: AreaCode,
    name: Type.String({ minLength: 1, maxLength: 100 }),
    parentCode: AreaCode,
    geometry: AreaGeometry,
    synthetic: Type.Optional(Type.Boolean({ default: false })),
  },
  { additionalProperties: false },
);
export type AreaCreate = Static<typeof AreaCreate>;

export const AreaPatch = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    geometry: Type.Optional(AreaGeometry),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type AreaPatch = Static<typeof AreaPatch>;
