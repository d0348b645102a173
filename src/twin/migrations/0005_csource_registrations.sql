-- NGSI-LD context source registrations (上下文源注册, ETSI GS CIM 009 v1.8 §5.2.9, §5.9, §5.10):
-- which other brokers or context sources may provide which entities and attributes. One row per
-- registration and tenant; the registration itself is kept whole as normalized JSON (types and
-- attribute names expanded to IRIs, so it reads correctly under any client's @context), and what
-- discovery filters on is materialised beside it so the filters can use indexes.
create table twin.csource_registrations (
  tenant text not null,
  id text not null,
  body jsonb not null,
  -- Expanded entity types of every information entry: the usual discovery filter (GIN, &&).
  types text[] not null default '{}',
  -- The registration's `location` (2D, WGS-84), for georel/geometry/coordinates (GiST).
  location geometry(Geometry, 4326),
  -- Past this instant the registration no longer counts; null = it never expires.
  expires_at timestamptz,
  -- The distributed-operation mode (§4.3.6); exclusive ones are checked for overlaps on write.
  mode text not null default 'inclusive'
    check (mode in ('inclusive', 'exclusive', 'redirect', 'auxiliary')),
  created_at timestamptz not null,
  modified_at timestamptz not null,
  -- Bumped by every update (for optimistic concurrency and ETags later).
  version bigint not null default 1,
  primary key (tenant, id)
);
create index csource_registrations_types_idx on twin.csource_registrations using gin (types);
create index csource_registrations_location_idx on twin.csource_registrations using gist (location);
