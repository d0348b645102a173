-- 区域 (jurisdictions): 市 → 区 → 街镇 → 居村 → 网格, with codes, geometry and a materialized path.
create table trust.areas (
  -- GB/T 2260 (6 digits) for city and districts, GB/T 10114 style for streets (9) and residents'
  -- committees (12), and the GB/T 30428 style unit-grid code (15 = committee + 3-digit serial).
  code        text primary key check (code ~ '^[0-9]{6}([0-9]{3}){0,3}$'),
  name        text not null check (length(name) between 1 and 100),
  level       text not null check (level in ('city', 'district', 'street', 'community', 'grid')),
  depth       smallint not null check (depth between 0 and 4),
  parent_code text references trust.areas (code),
  -- Codes from the root down, joined by '/': ancestors and descendants without recursion.
  path        text not null unique,
  -- The area itself is invented (demo residents' committees and grids).
  synthetic   boolean not null default false,
  -- The boundary is generated (streets have real codes and names but no public boundaries).
  geometry_synthetic boolean not null default false,
  geom        geometry(MultiPolygon, 4326),
  centroid    geometry(Point, 4326),
  area_km2    double precision,
  created_at  timestamptz not null default now(),
  check ((depth = 0) = (parent_code is null))
);
create index areas_geom_idx on trust.areas using gist (geom);
-- Grids tile the city, so point location first looks among grids only: small polygons, one index.
create index areas_grid_geom_idx on trust.areas using gist (geom) where level = 'grid';
create index areas_path_idx on trust.areas (path text_pattern_ops);
create index areas_parent_idx on trust.areas (parent_code);
create index areas_level_idx on trust.areas (level);
