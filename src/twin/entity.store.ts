/** SQL for the twin's entities and tenants (twin.entities, twin.tenants). */
import { sql, type Kysely, type QueryExecutorProvider, type RawBuilder } from 'kysely';
import { insertRows, writeWith, type KernelTables, type Rider } from '../kernel/index.ts';
import type { Attrs } from './entity.model.ts';
import type { EntityRecord } from './entity.render.ts';

type Db = QueryExecutorProvider;

interface EntityRow {
  id: string;
  types: string[];
  scopes: string[] | null;
  created_at: Date;
  modified_at: Date;
  attrs: Attrs;
  area_path: string | null;
  version: number;
}

/** A stored entity with where it lies (its jurisdiction path). */
export interface StoredEntity extends EntityRecord {
  areaPath: string | null;
  /** Bumped by every write: a write applies only to the version it read (optimistic concurrency). */
  version: number;
}

const toStored = (r: EntityRow): StoredEntity => ({
  id: r.id,
  types: r.types,
  scopes: r.scopes,
  createdAt: r.created_at.toISOString(),
  modifiedAt: r.modified_at.toISOString(),
  attrs: r.attrs,
  areaPath: r.area_path,
  version: r.version,
});

const COLUMNS = sql`e.id, e.types, e.scopes, e.created_at, e.modified_at, e.attrs, e.area_path, e.version`;

/** The geometry column's value: GeoJSON → 2D WGS-84 geometry (heights are kept in attrs only). */
const geometryValue = (geojson: string | null): RawBuilder<unknown> =>
  geojson === null ? sql`null` : sql`st_force2d(st_setsrid(st_geomfromgeojson(${geojson}), 4326))`;

export interface EntityWrite {
  tenant: string;
  id: string;
  types: string[];
  scopes: string[] | null;
  attrs: Attrs;
  /** The `location` GeoProperty's geometry as GeoJSON text, or null. */
  location: string | null;
  areaPath: string | null;
  at: Date;
}

// --- Tenants -----------------------------------------------------------------------------------

/** True when the tenant exists (the default tenant '' always does). */
export async function tenantExists(db: Db, tenant: string): Promise<boolean> {
  const { rows } = await sql<{
    one: number;
  }>`select 1 as one from twin.tenants where name = ${tenant}`.execute(db);
  return rows.length > 0;
}

/** Creates the tenant if missing (NGSI-LD: by its first write), riding along with that write. */
export const tenantRider = (tenant: string): Rider => ({
  statement: insertRows({
    table: 'twin.tenants',
    columns: [['name', 'text']],
    rows: [[tenant]],
    onConflictDoNothing: true,
  }),
});

export interface TenantInfo {
  name: string;
  createdAt: string;
  entities: number;
}

export async function listTenants(db: Db): Promise<TenantInfo[]> {
  const { rows } = await sql<{ name: string; created_at: Date; entities: string }>`
    select t.name, t.created_at, (select count(*) from twin.entities e where e.tenant = t.name) as entities
      from twin.tenants t order by t.name`.execute(db);
  return rows.map((r) => ({
    name: r.name,
    createdAt: r.created_at.toISOString(),
    entities: Number(r.entities),
  }));
}

/** Deletes a tenant and all its entities; returns the number of entities removed, or undefined. */
export async function dropTenant(db: Db, tenant: string): Promise<number | undefined> {
  const { rows } = await sql<{
    name: string;
  }>`delete from twin.tenants where name = ${tenant} returning name`.execute(db);
  if (rows.length === 0) return undefined;
  const deleted = await sql`delete from twin.entities where tenant = ${tenant}`.execute(db);
  return Number(deleted.numAffectedRows ?? 0);
}

// --- Entities ----------------------------------------------------------------------------------

/** One entity, optionally locked for the rest of the transaction (read-modify-write without lost updates). */
export async function findEntity(
  db: Db,
  tenant: string,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<StoredEntity | undefined> {
  const lock = options.forUpdate ? sql` for update` : sql``;
  const { rows } = await sql<EntityRow>`select ${COLUMNS} from twin.entities e
    where e.tenant = ${tenant} and e.id = ${id}${lock}`.execute(db);
  const row = rows[0];
  return row ? toStored(row) : undefined;
}

/** The entities with these ids that `scope` lets the caller see (linked-entity retrieval). */
export async function findEntities(
  db: Db,
  tenant: string,
  ids: string[],
  scope: RawBuilder<boolean>,
): Promise<StoredEntity[]> {
  if (ids.length === 0) return [];
  const { rows } = await sql<EntityRow>`select ${COLUMNS} from twin.entities e
    where e.tenant = ${tenant} and e.id = any(${ids}::text[]) and ${scope} order by e.id`.execute(db);
  return rows.map(toStored);
}

/** Which of `ids` exist in the tenant (other modules linking to entities check them here). */
export async function existingEntityIds(
  db: Db,
  tenant: string,
  ids: readonly string[],
): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const { rows } = await sql<{ id: string }>`select e.id from twin.entities e
    where e.tenant = ${tenant} and e.id = any(${ids}::text[])`.execute(db);
  return new Set(rows.map((r) => r.id));
}

type Writer = Kysely<KernelTables>;

/**
 * Inserts a new entity and, in the same statement, its riders (audit record, outbox event); false
 * when one with this id exists already (nothing written).
 */
export async function insertEntity(db: Writer, w: EntityWrite, riders: Rider[]): Promise<boolean> {
  const rows = await writeWith(
    db,
    sql<{ id: string }>`insert into twin.entities
        (tenant, id, types, scopes, created_at, modified_at, attrs, location, area_path)
      values (${w.tenant}, ${w.id}, ${w.types}::text[], ${w.scopes}::text[], ${w.at}, ${w.at},
              ${JSON.stringify(w.attrs)}::jsonb, ${geometryValue(w.location)}, ${w.areaPath})
      on conflict (tenant, id) do nothing returning id`,
    riders,
  );
  return rows.length > 0;
}

/**
 * Rewrites an entity's content (types, scopes, attributes, location) and writes its riders, if
 * the entity is still at `version`; false when it was changed or deleted since it was read.
 */
export async function updateEntity(
  db: Writer,
  w: EntityWrite,
  version: number,
  riders: Rider[],
): Promise<boolean> {
  const rows = await writeWith(
    db,
    sql<{ id: string }>`update twin.entities set types = ${w.types}::text[], scopes = ${w.scopes}::text[],
        modified_at = ${w.at}, attrs = ${JSON.stringify(w.attrs)}::jsonb,
        location = ${geometryValue(w.location)}, area_path = ${w.areaPath}, version = version + 1
      where tenant = ${w.tenant} and id = ${w.id} and version = ${version} returning id`,
    riders,
  );
  return rows.length > 0;
}

/** Deletes an entity and writes its riders if it is still at `version`; false otherwise. */
export async function deleteEntity(
  db: Writer,
  entity: { tenant: string; id: string; version: number },
  riders: Rider[],
): Promise<boolean> {
  const rows = await writeWith(
    db,
    sql<{ id: string }>`delete from twin.entities
      where tenant = ${entity.tenant} and id = ${entity.id} and version = ${entity.version} returning id`,
    riders,
  );
  return rows.length > 0;
}

export interface EntityQuery {
  tenant: string;
  /** Conditions over the row alias `e`, ANDed. */
  where: RawBuilder<boolean>[];
  limit: number;
  offset: number;
  /** Keyset continuation: only ids after this one (the Link header's `next` carries it). */
  after?: string | undefined;
  /** Ordering expression instead of the id (e.g. distance for `near`); disables keyset. */
  orderBy?: RawBuilder<unknown> | undefined;
}

const whereOf = (q: EntityQuery): RawBuilder<boolean> =>
  sql<boolean>`${sql.join([sql`e.tenant = ${q.tenant}`, ...q.where], sql` and `)}`;

/** A page of matching entities in id order (or `orderBy`), from `after` or `offset`. */
export async function queryEntities(db: Db, q: EntityQuery): Promise<StoredEntity[]> {
  if (q.limit === 0) return [];
  const where = q.after !== undefined ? sql`${whereOf(q)} and e.id > ${q.after}` : whereOf(q);
  const order = q.orderBy ? sql`${q.orderBy}, e.id` : sql`e.id`;
  const offset = q.after !== undefined ? 0 : q.offset;
  const { rows } = await sql<EntityRow>`select ${COLUMNS} from twin.entities e where ${where}
    order by ${order} limit ${q.limit} offset ${offset}`.execute(db);
  return rows.map(toStored);
}

/** How many entities match (NGSILD-Results-Count). */
export async function countEntities(db: Db, q: EntityQuery): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*) as n from twin.entities e
    where ${whereOf(q)}`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

// --- Discovery (§5.7.5–5.7.8) --------------------------------------------------------------------

/** Every entity type in use, with the attributes its entities have. */
export async function typesInUse(
  db: Db,
  tenant: string,
  scope: RawBuilder<boolean>,
): Promise<{ type: string; attributes: string[]; count: number }[]> {
  const { rows } = await sql<{ type: string; attributes: string[] | null; count: string }>`
    select t.type, count(distinct e.id) as count,
           array_agg(distinct k.key order by k.key) filter (where k.key is not null) as attributes
      from twin.entities e
      cross join lateral unnest(e.types) as t(type)
      left join lateral jsonb_object_keys(e.attrs) as k(key) on true
     where e.tenant = ${tenant} and ${scope}
     group by t.type order by t.type`.execute(db);
  return rows.map((r) => ({ type: r.type, attributes: r.attributes ?? [], count: Number(r.count) }));
}

/** Details of one type: entity count and each attribute with its attribute types. */
export async function typeDetails(
  db: Db,
  tenant: string,
  type: string,
  scope: RawBuilder<boolean>,
): Promise<{ count: number; attributes: { name: string; types: string[] }[] }> {
  const { rows: counts } = await sql<{ n: string }>`select count(*) as n from twin.entities e
    where e.tenant = ${tenant} and e.types @> array[${type}]::text[] and ${scope}`.execute(db);
  const { rows } = await sql<{ name: string; types: string[] }>`
    select a.key as name, array_agg(distinct i.value->>'type' order by i.value->>'type') as types
      from twin.entities e, jsonb_each(e.attrs) a, jsonb_array_elements(a.value) i
     where e.tenant = ${tenant} and e.types @> array[${type}]::text[] and ${scope}
     group by a.key order by a.key`.execute(db);
  return { count: Number(counts[0]?.n ?? 0), attributes: rows };
}

/** Every attribute in use with how many entities have it, its attribute types and entity types. */
export async function attributesInUse(
  db: Db,
  tenant: string,
  scope: RawBuilder<boolean>,
  only?: string,
): Promise<{ name: string; count: number; attributeTypes: string[]; entityTypes: string[] }[]> {
  const filter = only === undefined ? sql`` : sql` and a.key = ${only}`;
  const { rows } = await sql<{
    name: string;
    count: string;
    attribute_types: string[];
    entity_types: string[];
  }>`
    select a.key as name, count(distinct e.id) as count,
           array_agg(distinct i.value->>'type' order by i.value->>'type') as attribute_types,
           array_agg(distinct t.type order by t.type) as entity_types
      from twin.entities e
      cross join lateral jsonb_each(e.attrs) as a(key, value)
      cross join lateral jsonb_array_elements(a.value) as i(value)
      cross join lateral unnest(e.types) as t(type)
     where e.tenant = ${tenant} and ${scope}${filter}
     group by a.key order by a.key`.execute(db);
  return rows.map((r) => ({
    name: r.name,
    count: Number(r.count),
    attributeTypes: r.attribute_types,
    entityTypes: r.entity_types,
  }));
}

// --- Hosted @context documents -----------------------------------------------------------------

export async function findHostedContext(
  db: Db,
  id: string,
): Promise<{ body: object; createdAt: string } | undefined> {
  const { rows } = await sql<{ body: object; created_at: Date }>`select body, created_at
    from twin.jsonld_contexts where id = ${id}`.execute(db);
  const row = rows[0];
  return row ? { body: row.body, createdAt: row.created_at.toISOString() } : undefined;
}

export async function listHostedContexts(db: Db): Promise<{ id: string; body: object; createdAt: string }[]> {
  const { rows } = await sql<{ id: string; body: object; created_at: Date }>`select id, body, created_at
    from twin.jsonld_contexts order by created_at, id`.execute(db);
  return rows.map((r) => ({ id: r.id, body: r.body, createdAt: r.created_at.toISOString() }));
}

export async function insertHostedContext(db: Db, id: string, body: object): Promise<void> {
  await sql`insert into twin.jsonld_contexts (id, body) values (${id}, ${JSON.stringify(body)}::jsonb)`.execute(
    db,
  );
}

export async function deleteHostedContext(db: Db, id: string): Promise<boolean> {
  const { rows } = await sql<{
    id: string;
  }>`delete from twin.jsonld_contexts where id = ${id} returning id`.execute(db);
  return rows.length > 0;
}
