-- The twin's history (可追溯): every attribute instance ever written, for the NGSI-LD temporal API.
-- Entity writes add their changed instances in the same statement as the change; the temporal API
-- adds (and deletes) instances directly.

-- Every entity that has history, existing or deleted: its types and jurisdiction for temporal
-- queries, and the attribute IRIs it has history for (so `lastN` and aggregations can go straight
-- to each attribute's index range instead of scanning the entity's history for its attributes).
create table twin.temporal_entities (
  tenant text not null,
  id text not null,
  types text[] not null,
  area_path text,
  attrs text[] not null default '{}',
  created_at timestamptz not null,
  modified_at timestamptz not null,
  primary key (tenant, id)
);
create index temporal_entities_types_idx on twin.temporal_entities using gin (types);
create index temporal_entities_area_idx on twin.temporal_entities (tenant, area_path text_pattern_ops);

-- Attribute instances, range-partitioned by month on `ts` (observedAt, else the time the instance
-- was recorded): old months can be detached or dropped whole, and a time range reads only its
-- months. Months are created ahead by the twin at start and daily; anything outside them lands in
-- the default partition.
create table twin.attr_instances (
  tenant text not null,
  entity_id text not null,
  -- Expanded attribute IRI.
  attr text not null,
  -- '' for the default instance (no datasetId).
  dataset_id text not null default '',
  instance_id uuid not null,
  ts timestamptz not null,
  observed_at timestamptz,
  created_at timestamptz not null,
  modified_at timestamptz not null,
  -- The value when it is a number: aggregations read this column, not the JSON.
  num double precision,
  -- The instance as stored (twin storage format, expanded IRIs).
  value jsonb not null,
  -- A deletion of the attribute (instance value urn:ngsi-ld:null, with deletedAt).
  deleted boolean not null default false
) partition by range (ts);
create table twin.attr_instances_default partition of twin.attr_instances default;
-- One attribute's history in time order: lastN, ranges and aggregations per attribute.
create index attr_instances_key_idx on twin.attr_instances (tenant, entity_id, attr, ts);
-- Whole-range scans across entities (e.g. retention, analytics) stay cheap as history grows.
create index attr_instances_ts_brin on twin.attr_instances using brin (ts);
create index attr_instances_instance_idx on twin.attr_instances (instance_id);
