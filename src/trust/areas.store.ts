/**
 * SQL for areas (区域). Geometry work (tessellation, point location) runs in PostGIS, the same SQL
 * on PGlite and PostgreSQL. The service locates points in memory (`areas.index.ts`); the SQL
 * point location stays as its baseline and test oracle.
 */
import { sql, type QueryExecutorProvider } from 'kysely';
import type { AreaLevel } from './areas.schema.ts';
import { escapeLike } from './sql.ts';

export interface AreaRow {
  code: string;
  name: string;
  level: AreaLevel;
  depth: number;
  parent_code: string | null;
  path: string;
  synthetic: boolean;
  geometry_synthetic: boolean;
  lon: number | null;
  lat: number | null;
  area_km2: number | null;
  geometry?: string | null;
}

/** A database or a transaction: these functions run raw SQL (PostGIS) only. */
type Db = QueryExecutorProvider;

const columns = sql`code, name, level, depth, parent_code, path, synthetic, geometry_synthetic,
  ST_X(centroid) as lon, ST_Y(centroid) as lat, area_km2`;

export async function countAreas(db: Db): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*) as n from trust.areas`.execute(db);
  return rows[0]?.n ?? 0;
}

export async function findArea(db: Db, code: string, withGeometry: boolean): Promise<AreaRow | undefined> {
  const geometry = withGeometry ? sql`, ST_AsGeoJSON(geom, 6) as geometry` : sql``;
  const { rows } =
    await sql<AreaRow>`select ${columns} ${geometry} from trust.areas where code = ${code}`.execute(db);
  return rows[0];
}

export async function findChildren(db: Db, code: string): Promise<AreaRow[]> {
  const { rows } =
    await sql<AreaRow>`select ${columns} from trust.areas where parent_code = ${code} order by code`.execute(
      db,
    );
  return rows;
}

/**
 * The deepest area covering the point and all its ancestors, root first, in one round trip. Grids
 * are searched first (their own index, small polygons); only a point outside every grid is
 * looked up among all levels. Empty when no area covers the point. The service answers from its
 * in-process index (`areas.index.ts`); this statement is its benchmark baseline and test oracle.
 */
export async function locatePointChain(db: Db, lon: number, lat: number): Promise<AreaRow[]> {
  const { rows } = await sql<AreaRow>`
    with pt as (select ST_SetSRID(ST_MakePoint(${lon}, ${lat}), 4326) as g),
    grid as (
      select a.path from trust.areas a, pt where a.level = 'grid' and ST_Covers(a.geom, pt.g) limit 1
    ),
    hit as (
      select path from grid
      union all
      select path from (
        select a.path from trust.areas a, pt
        where not exists (select 1 from grid) and ST_Covers(a.geom, pt.g)
        order by a.depth desc limit 1
      ) deepest
    )
    select ${columns} from trust.areas
    where code = any(string_to_array((select path from hit limit 1), '/'))
    order by depth`.execute(db);
  return rows;
}

/**
 * Every area, boundaries included as little-endian WKB (exact doubles, unlike GeoJSON text; null
 * without a boundary), for the in-process point-location index.
 */
export async function readAreasWithBoundaries(db: Db): Promise<(AreaRow & { wkb: Uint8Array | null })[]> {
  const { rows } = await sql<AreaRow & { wkb: Uint8Array | null }>`
    select ${columns}, ST_AsBinary(geom, 'NDR') as wkb from trust.areas order by code`.execute(db);
  return rows;
}

/** The areas' revision: a trigger bumps it on every statement that changes `trust.areas`. */
export async function readAreaRevision(db: Db): Promise<number> {
  const { rows } = await sql<{ revision: number }>`select revision from trust.area_revision`.execute(db);
  return rows[0]?.revision ?? 0;
}

/** Counts descendants of `path` by level (materialized-path prefix scan). */
export async function countDescendants(db: Db, path: string): Promise<Record<string, number>> {
  const { rows } = await sql<{ level: string; n: number }>`
    select level, count(*) as n from trust.areas
    where path like ${`${escapeLike(path)}/%`}
    group by level`.execute(db);
  return Object.fromEntries(rows.map((r) => [r.level, r.n]));
}

export async function insertRoot(db: Db, args: { code: string; name: string }): Promise<void> {
  await sql`insert into trust.areas (code, name, level, depth, parent_code, path)
    values (${args.code}, ${args.name}, 'city', 0, null, ${args.code})`.execute(db);
}

/** Inserts districts with their real boundaries (GeoJSON), repaired to valid multipolygons. */
export async function insertDistrict(
  db: Db,
  args: { code: string; name: string; parent: string; geojson: string },
): Promise<void> {
  await sql`insert into trust.areas (code, name, level, depth, parent_code, path, geom)
    select ${args.code}, ${args.name}, 'district', 1, p.code, p.path || '/' || ${args.code},
           ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_SetSRID(ST_GeomFromGeoJSON(${args.geojson}), 4326)), 3))
    from trust.areas p where p.code = ${args.parent}`.execute(db);
}

/** The city's boundary is the union of its districts'. */
export async function unionChildrenInto(db: Db, code: string): Promise<void> {
  await sql`update trust.areas set geom = (
      select ST_Multi(ST_CollectionExtract(ST_Union(geom), 3)) from trust.areas where parent_code = ${code})
    where code = ${code}`.execute(db);
}

/**
 * Cells tiling `parent.geom`: a Voronoi diagram of `n` seeded random points inside it, clipped
 * to it, numbered north to south, then west to east. The same seed gives the same cells.
 */
const cells = (n: number, seed: number) => sql`
  select geom, row_number() over (order by ST_Y(ST_PointOnSurface(geom)) desc, ST_X(ST_PointOnSurface(geom))) as ord
  from (
    select ST_Multi(ST_CollectionExtract(ST_Intersection(v.cell, p.geom), 3)) as geom
    from (select (ST_Dump(ST_VoronoiPolygons(ST_GeneratePoints(p.geom, ${n}, ${seed}), 0, p.geom))).geom as cell) v
  ) clipped
  where not ST_IsEmpty(geom)`;

/** Inserts named children of one parent, each given a generated cell of the parent's boundary. */
export async function insertChildrenWithCells(
  db: Db,
  args: { parent: string; level: AreaLevel; children: { code: string; name: string }[]; seed: number },
): Promise<number> {
  const codes = args.children.map((c) => c.code);
  const names = args.children.map((c) => c.name);
  const result = await sql`
    insert into trust.areas (code, name, level, depth, parent_code, path, geometry_synthetic, geom)
    select c.code, c.name, ${args.level}, p.depth + 1, p.code, p.path || '/' || c.code, true, cell.geom
    from trust.areas p
    cross join unnest(${codes}::text[], ${names}::text[]) with ordinality as c(code, name, ord)
    left join lateral (${cells(args.children.length, args.seed)}) cell on cell.ord = c.ord
    where p.code = ${args.parent}`.execute(db);
  return Number(result.numAffectedRows ?? 0n);
}

/**
 * Gives every area of `parentLevel` `n` synthetic children of `level`, coded parent code + a
 * three-digit serial and named `<parent name>` + `nameSuffix` with the serial, tiling the parent.
 */
export async function insertSyntheticChildren(
  db: Db,
  args: { parentLevel: AreaLevel; level: AreaLevel; n: number; nameFormat: string; seed: number },
): Promise<number> {
  const result = await sql`
    insert into trust.areas (code, name, level, depth, parent_code, path, synthetic, geometry_synthetic, geom)
    select p.code || lpad(c.ord::text, 3, '0'), format(${args.nameFormat}, p.name, c.ord), ${args.level},
           p.depth + 1, p.code, p.path || '/' || p.code || lpad(c.ord::text, 3, '0'), true, true, c.geom
    from trust.areas p
    cross join lateral (${cells(args.n, args.seed)}) c
    where p.level = ${args.parentLevel} and p.geom is not null
      and not exists (select 1 from trust.areas x where x.parent_code = p.code)`.execute(db);
  return Number(result.numAffectedRows ?? 0n);
}

/** Parents of `parentLevel` that have a boundary but no children yet. */
export async function countChildless(db: Db, parentLevel: AreaLevel): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*) as n from trust.areas p
    where p.level = ${parentLevel} and p.geom is not null
      and not exists (select 1 from trust.areas x where x.parent_code = p.code)`.execute(db);
  return rows[0]?.n ?? 0;
}

/**
 * Makes the children of every `parentLevel` area tile it exactly: each piece of a parent that no
 * child covers (islands beyond the generated cells, slivers from clipping) joins the nearest child.
 */
export async function closeGaps(db: Db, parentLevel: AreaLevel): Promise<void> {
  await sql`
    with remainder as (
      select p.code as parent, (ST_Dump(ST_CollectionExtract(ST_Difference(p.geom, u.covered), 3))).geom as part
      from trust.areas p
      cross join lateral (select ST_Union(c.geom) as covered from trust.areas c where c.parent_code = p.code) u
      where p.level = ${parentLevel} and u.covered is not null
    ), nearest as (
      select r.part, (select c.code from trust.areas c where c.parent_code = r.parent
                      order by ST_Distance(c.geom, r.part), c.code limit 1) as code
      from remainder r
      where not ST_IsEmpty(r.part)
    )
    update trust.areas a
    set geom = ST_Multi(ST_CollectionExtract(ST_Union(a.geom, n.parts), 3))
    from (select code, ST_Union(part) as parts from nearest group by code) n
    where a.code = n.code`.execute(db);
}

export interface AreaFeatureRow {
  code: string;
  name: string;
  parent_code: string;
  geometry: string;
}

/** The areas of one level with their boundaries as GeoJSON (6 decimals, about 0.1 m). */
export async function exportLevel(db: Db, level: AreaLevel): Promise<AreaFeatureRow[]> {
  // Snapped to the 6-decimal grid first, so the rounded output is still a valid polygon.
  const { rows } = await sql<AreaFeatureRow>`select code, name, parent_code,
      ST_AsGeoJSON(ST_Multi(ST_CollectionExtract(ST_ReducePrecision(geom, 0.000001), 3)), 6) as geometry
    from trust.areas where level = ${level} order by code`.execute(db);
  return rows;
}

/**
 * Inserts areas of one level below existing parents, boundaries given as valid GeoJSON (see
 * `exportLevel`); depth and path come from the parent. No repair here: on PGlite's PostGIS build,
 * ST_MakeValid in a set-based insert was seen to drop rows silently. Resolves to the number inserted (rows whose parent is missing are skipped).
 */
export async function insertAreas(
  db: Db,
  args: {
    level: AreaLevel;
    synthetic: boolean;
    rows: { code: string; name: string; parent: string; geometry: string }[];
  },
): Promise<number> {
  let inserted = 0;
  for (let i = 0; i < args.rows.length; i += 2_000) {
    const chunk = args.rows.slice(i, i + 2_000);
    const result = await sql`
      insert into trust.areas (code, name, level, depth, parent_code, path, synthetic, geometry_synthetic, geom)
      select c.code, c.name, ${args.level}, p.depth + 1, p.code, p.path || '/' || c.code, ${args.synthetic}, true,
             ST_Multi(ST_CollectionExtract(ST_SetSRID(ST_GeomFromGeoJSON(c.geometry), 4326), 3))
      from unnest(${chunk.map((r) => r.code)}::text[], ${chunk.map((r) => r.name)}::text[],
                  ${chunk.map((r) => r.parent)}::text[], ${chunk.map((r) => r.geometry)}::text[])
             as c(code, name, parent, geometry)
      join trust.areas p on p.code = c.parent`.execute(db);
    inserted += Number(result.numAffectedRows ?? 0n);
  }
  return inserted;
}

/** Fills centroids (a point inside the boundary) and areas in km² for rows that lack them. */
export async function fillDerived(db: Db): Promise<void> {
  await sql`update trust.areas
    set centroid = ST_PointOnSurface(geom), area_km2 = ST_Area(geom::geography) / 1e6
    where geom is not null and centroid is null`.execute(db);
}

export interface GeometryCheck {
  valid: boolean;
  reason: string;
  /** Share of the new boundary lying outside the parent's. */
  outside: number;
  /** Share of the new boundary overlapping the parent's other children. */
  overlap: number;
  /** Share of the area's own children left outside the new boundary. */
  orphaned: number;
}

/**
 * Checks a GeoJSON boundary for an area below `parentCode` (replacing `selfCode`'s, if given):
 * validity, and how much of it lies outside the parent, over siblings, or leaves children outside.
 */
export async function checkBoundary(
  db: Db,
  args: { geojson: string; parentCode: string; selfCode: string | null },
): Promise<GeometryCheck | undefined> {
  const { rows } = await sql<GeometryCheck>`
    with g as (select ST_Multi(ST_CollectionExtract(ST_SetSRID(ST_GeomFromGeoJSON(${args.geojson}), 4326), 3)) as geom)
    select ST_IsValid(g.geom) as valid, ST_IsValidReason(g.geom) as reason,
      case when not ST_IsValid(g.geom) or ST_Area(g.geom) = 0 then 1
           else ST_Area(ST_Difference(g.geom, p.geom)) / ST_Area(g.geom) end as outside,
      case when not ST_IsValid(g.geom) or ST_Area(g.geom) = 0 then 1
           else coalesce((select sum(ST_Area(ST_Intersection(g.geom, s.geom))) from trust.areas s
                          where s.parent_code = p.code and s.code is distinct from ${args.selfCode}
                            and ST_Intersects(s.geom, g.geom)), 0) / ST_Area(g.geom) end as overlap,
      case when not ST_IsValid(g.geom) then 1
           else coalesce((select sum(ST_Area(ST_Difference(c.geom, g.geom))) / nullif(sum(ST_Area(c.geom)), 0)
                          from trust.areas c where c.parent_code = ${args.selfCode}), 0) end as orphaned
    from g, trust.areas p where p.code = ${args.parentCode}`.execute(db);
  return rows[0];
}

/** Inserts one area below its parent (depth and path from the parent), with derived fields. */
export async function insertArea(
  db: Db,
  a: {
    code: string;
    name: string;
    level: AreaLevel;
    parentCode: string;
    geojson: string;
    synthetic: boolean;
  },
): Promise<void> {
  await sql`insert into trust.areas (code, name, level, depth, parent_code, path, synthetic, geometry_synthetic, geom, centroid, area_km2)
    select ${a.code}, ${a.name}, ${a.level}, p.depth + 1, p.code, p.path || '/' || ${a.code}, ${a.synthetic}, ${a.synthetic}, g.geom,
           ST_PointOnSurface(g.geom), ST_Area(g.geom::geography) / 1e6
    from trust.areas p,
         (select ST_Multi(ST_CollectionExtract(ST_SetSRID(ST_GeomFromGeoJSON(${a.geojson}), 4326), 3)) as geom) g
    where p.code = ${a.parentCode}`.execute(db);
}

/** Renames an area and/or replaces its boundary (derived fields follow). */
export async function updateAreaRow(
  db: Db,
  code: string,
  patch: { name?: string; geojson?: string },
): Promise<void> {
  if (patch.name !== undefined)
    await sql`update trust.areas set name = ${patch.name} where code = ${code}`.execute(db);
  if (patch.geojson !== undefined)
    await sql`update trust.areas set geom = g.geom, centroid = ST_PointOnSurface(g.geom),
        area_km2 = ST_Area(g.geom::geography) / 1e6, geometry_synthetic = false
      from (select ST_Multi(ST_CollectionExtract(ST_SetSRID(ST_GeomFromGeoJSON(${patch.geojson}), 4326), 3)) as geom) g
      where code = ${code}`.execute(db);
}
