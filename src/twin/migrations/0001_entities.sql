-- The digital twin's NGSI-LD store (数字孪生底座). Entities are kept Stellio-style: one row per entity
-- with its attributes as a JSONB document keyed by expanded attribute IRIs (every attribute an
-- array of instances, for multi-instance attributes by datasetId), and the default `location`
-- GeoProperty materialised as a PostGIS geometry for indexed geo-queries.

-- Tenants (NGSILD-Tenant): '' is the default tenant; others are created on first write.
create table twin.tenants (
  name text primary key,
  created_at timestamptz not null default now()
);
insert into twin.tenants (name) values ('');

create table twin.entities (
  tenant text not null,
  id text not null,
  -- Expanded type IRIs; one entity may have several types (NGSI-LD 1.5+).
  types text[] not null,
  scopes text[],
  created_at timestamptz not null,
  modified_at timestamptz not null,
  attrs jsonb not null default '{}'::jsonb,
  location geometry(Geometry, 4326),
  -- The jurisdiction the entity lies in (trust.areas path of its location); null = city-wide.
  area_path text,
  primary key (tenant, id)
);
create index entities_types_idx on twin.entities using gin (types);
create index entities_location_idx on twin.entities using gist (location);
create index entities_area_idx on twin.entities (tenant, area_path text_pattern_ops);

-- JSON-LD @context documents hosted by the broker (POST /ngsi-ld/v1/jsonldContexts).
create table twin.jsonld_contexts (
  id text primary key,
  body jsonb not null,
  created_at timestamptz not null default now()
);
