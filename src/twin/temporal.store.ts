/**
 * SQL for the twin's history (twin.temporal_entities, twin.attr_instances): the riders that record
 * attribute instances with the write that makes them, the temporal queries (instances in a time
 * range, the last N, aggregations per period — each read per attribute through its index range),
 * the temporal entity writes, and the monthly partitions of the instance table.
 */
import { randomUUID } from 'node:crypto';
import { sql, type Kysely, type QueryExecutorProvider, type RawBuilder } from 'kysely';
import { insertRows, writeWith, type KernelTables, type Rider } from '../kernel/index.ts';
import type { Instance } from './entity.model.ts';
import type { AggregationMethod, Period, TimeProperty } from './temporal.model.ts';

type Db = QueryExecutorProvider;

/** One attribute instance to record. */
export interface HistoryInstance {
  attr: string;
  inst: Instance;
  /** A deletion of the attribute (or of its datasetId instance). */
  deleted?: boolean;
  /** The instance's UUID (a fresh one when absent). */
  uuid?: string;
}

const INSTANCE_COLUMNS = [
  ['tenant', 'text'],
  ['entity_id', 'text'],
  ['attr', 'text'],
  ['dataset_id', 'text'],
  ['instance_id', 'uuid'],
  ['ts', 'timestamptz'],
  ['observed_at', 'timestamptz'],
  ['created_at', 'timestamptz'],
  ['modified_at', 'timestamptz'],
  ['num', 'float8'],
  ['value', 'jsonb'],
  ['deleted', 'boolean'],
] as const;

/** The rider recording `instances` of entity `id` at `at` (none when there are none). */
export function instanceRiders(tenant: string, id: string, instances: HistoryInstance[], at: Date): Rider[] {
  const recorded = at.toISOString();
  const rows = instances.map(({ attr, inst, deleted, uuid }) => {
    const observed = typeof inst.observedAt === 'string' ? new Date(inst.observedAt).toISOString() : null;
    const { createdAt: _c, modifiedAt: _m, ...stored } = inst;
    return [
      tenant,
      id,
      attr,
      inst.datasetId ?? '',
      uuid ?? randomUUID(),
      observed ?? recorded,
      observed,
      recorded,
      recorded,
      typeof inst.value === 'number' && Number.isFinite(inst.value) && !deleted ? inst.value : null,
      JSON.stringify(stored),
      deleted === true,
    ];
  });
  if (rows.length === 0) return [];
  const riders: Rider[] = [
    { statement: insertRows({ table: 'twin.attr_instances', columns: INSTANCE_COLUMNS, rows }) },
  ];
  return riders;
}

export interface TemporalEntityWrite {
  tenant: string;
  id: string;
  types: string[];
  areaPath: string | null;
  /** Attribute IRIs now having history (added to those recorded before). */
  attrs: string[];
  at: Date;
}

/** The upsert of a temporal entity's row (types, area and attribute names kept current). */
const upsertTemporal = (w: TemporalEntityWrite, when: RawBuilder<unknown>) =>
  sql`insert into twin.temporal_entities as t (tenant, id, types, area_path, attrs, created_at, modified_at)
    select ${w.tenant}, ${w.id}, ${w.types}::text[], ${w.areaPath}, ${w.attrs}::text[], ${w.at}, ${w.at}
    where ${when}
    on conflict (tenant, id) do update set types = excluded.types, area_path = excluded.area_path,
      attrs = array(select distinct a from unnest(t.attrs || excluded.attrs) as a),
      modified_at = excluded.modified_at`;

/** The temporal entity row as a rider of an entity write (on create, or when types, area or attribute names change). */
export const temporalEntityRider = (w: TemporalEntityWrite): Rider => ({
  statement: (when) => upsertTemporal(w, when),
});

/**
 * Writes a temporal entity (create or add instances, §5.6.11–12) with its riders in one
 * statement; resolves to true when the entity had no history before.
 */
export async function upsertTemporalEntity(
  db: Kysely<KernelTables>,
  w: TemporalEntityWrite,
  riders: Rider[],
): Promise<boolean> {
  // xmax is 0 for a row this statement inserted, the locker's id for one it updated.
  const change = sql<{ created: boolean }>`${upsertTemporal(w, sql`true`)} returning (xmax = 0) as created`;
  const rows = await writeWith(db, change, riders);
  return rows[0]?.created === true;
}

export interface TemporalEntityRow {
  id: string;
  types: string[];
  areaPath: string | null;
  attrs: string[];
  createdAt: string;
  modifiedAt: string;
}

interface TemporalEntityDbRow {
  id: string;
  types: string[];
  area_path: string | null;
  attrs: string[];
  created_at: Date;
  modified_at: Date;
}

const toRow = (r: TemporalEntityDbRow): TemporalEntityRow => ({
  id: r.id,
  types: r.types,
  areaPath: r.area_path,
  attrs: r.attrs,
  createdAt: r.created_at.toISOString(),
  modifiedAt: r.modified_at.toISOString(),
});

/** One temporal entity (optionally locked for the rest of the transaction). */
export async function findTemporalEntity(
  db: Db,
  tenant: string,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<TemporalEntityRow | undefined> {
  const lock = options.forUpdate ? sql` for update` : sql``;
  const { rows } = await sql<TemporalEntityDbRow>`select id, types, area_path, attrs, created_at, modified_at
    from twin.temporal_entities where tenant = ${tenant} and id = ${id}${lock}`.execute(db);
  const r = rows[0];
  return r ? toRow(r) : undefined;
}

/** A page of temporal entities matching `where` (conditions over alias `e`), by id. */
export async function queryTemporalEntities(
  db: Db,
  q: {
    tenant: string;
    where: RawBuilder<boolean>[];
    limit: number;
    offset: number;
    after?: string | undefined;
  },
): Promise<TemporalEntityRow[]> {
  const where = [sql<boolean>`e.tenant = ${q.tenant}`, ...q.where];
  if (q.after !== undefined) where.push(sql<boolean>`e.id > ${q.after}`);
  const { rows } =
    await sql<TemporalEntityDbRow>`select e.id, e.types, e.area_path, e.attrs, e.created_at, e.modified_at
    from twin.temporal_entities e where ${sql.join(where, sql` and `)}
    order by e.id limit ${q.limit} offset ${q.after === undefined ? q.offset : 0}`.execute(db);
  return rows.map(toRow);
}

/** How many temporal entities match `where`. */
export async function countTemporalEntities(
  db: Db,
  q: { tenant: string; where: RawBuilder<boolean>[] },
): Promise<number> {
  const where = [sql<boolean>`e.tenant = ${q.tenant}`, ...q.where];
  const { rows } = await sql<{ n: string }>`select count(*) as n from twin.temporal_entities e
    where ${sql.join(where, sql` and `)}`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/** The instance column a time property reads. */
const timeColumn = (tp: TimeProperty): RawBuilder<Date> =>
  tp === 'observedAt'
    ? sql<Date>`i.ts`
    : tp === 'createdAt'
      ? sql<Date>`i.created_at`
      : sql<Date>`i.modified_at`;

export interface InstanceRow {
  entityId: string;
  attr: string;
  uuid: string;
  time: string;
  createdAt: string;
  modifiedAt: string;
  deleted: boolean;
  value: Instance;
}

export interface InstanceSelection {
  tenant: string;
  /** (entity id, attribute IRI) pairs, each read through its own index range. */
  pairs: [string, string][];
  from?: string | undefined;
  to?: string | undefined;
  timeproperty: TimeProperty;
  /** The last N (newest) instances of each attribute; else the first `max` in time order. */
  lastN?: number | undefined;
  max: number;
}

function rangeConditions(s: Pick<InstanceSelection, 'from' | 'to' | 'timeproperty'>): RawBuilder<boolean>[] {
  const col = timeColumn(s.timeproperty);
  const out: RawBuilder<boolean>[] = [];
  if (s.from !== undefined) out.push(sql<boolean>`${col} >= ${s.from}::timestamptz`);
  if (s.to !== undefined) out.push(sql<boolean>`${col} < ${s.to}::timestamptz`);
  // ts bounds the partitions read even when another time property is asked for: an instance is
  // recorded no earlier than it is observed… but not the other way round, so only for observedAt.
  return out;
}

/**
 * The instances of each (entity, attribute) pair in the range, oldest first: with `lastN`, the
 * N newest; else at most `max + 1` (one more than the caller returns, so it can tell there are more).
 */
export async function selectInstances(db: Db, s: InstanceSelection): Promise<InstanceRow[]> {
  if (s.pairs.length === 0) return [];
  const col = timeColumn(s.timeproperty);
  const where = [
    sql<boolean>`i.tenant = ${s.tenant}`,
    sql<boolean>`i.entity_id = p.eid`,
    sql<boolean>`i.attr = p.attr`,
    ...rangeConditions(s),
  ];
  const newestFirst = s.lastN !== undefined;
  const limit = s.lastN ?? s.max + 1;
  const { rows } = await sql<{
    eid: string;
    attr: string;
    instance_id: string;
    t: Date;
    created_at: Date;
    modified_at: Date;
    deleted: boolean;
    value: Instance;
  }>`select p.eid, p.attr, x.instance_id, x.t, x.created_at, x.modified_at, x.deleted, x.value
    from unnest(${s.pairs.map((p) => p[0])}::text[], ${s.pairs.map((p) => p[1])}::text[]) with ordinality as p(eid, attr, n)
    cross join lateral (
      select i.instance_id, ${col} as t, i.created_at, i.modified_at, i.deleted, i.value
        from twin.attr_instances i where ${sql.join(where, sql` and `)}
        order by ${col} ${newestFirst ? sql`desc` : sql`asc`}, i.instance_id limit ${limit}) x
    order by p.n, x.t, x.instance_id`.execute(db);
  return rows.map((r) => ({
    entityId: r.eid,
    attr: r.attr,
    uuid: r.instance_id,
    time: r.t.toISOString(),
    createdAt: r.created_at.toISOString(),
    modifiedAt: r.modified_at.toISOString(),
    deleted: r.deleted,
    value: r.value,
  }));
}

export interface AggregateRow {
  entityId: string;
  attr: string;
  start: string;
  end: string;
  values: Partial<Record<AggregationMethod, number | null>>;
}

/** The value member of an instance as JSON (whatever its attribute type), for distinctCount. */
const MAIN_VALUE = sql`coalesce(i.value -> 'value', i.value -> 'object', i.value -> 'languageMap', i.value -> 'vocab',
  i.value -> 'valueList', i.value -> 'objectList', i.value -> 'json')`;

const AGGREGATES: Record<AggregationMethod, RawBuilder<unknown>> = {
  totalCount: sql`count(*)`,
  distinctCount: sql`count(distinct ${MAIN_VALUE})`,
  sum: sql`sum(i.num)`,
  avg: sql`avg(i.num)`,
  min: sql`min(i.num)`,
  max: sql`max(i.num)`,
  stddev: sql`stddev_pop(i.num)`,
  sumsq: sql`sum(i.num * i.num)`,
};

/**
 * Aggregates of each (entity, attribute) pair per period (§4.5.19): buckets aligned on the range
 * start (or the epoch), calendar months in UTC, or the whole range; deletions are not values.
 */
export async function aggregateInstances(
  db: Db,
  s: Omit<InstanceSelection, 'lastN' | 'max'> & { methods: AggregationMethod[]; period: Period },
): Promise<AggregateRow[]> {
  if (s.pairs.length === 0) return [];
  const col = timeColumn(s.timeproperty);
  const origin = s.from ?? '1970-01-01T00:00:00Z';
  let bucket: RawBuilder<Date>;
  let end: RawBuilder<Date>;
  if (s.period.kind === 'fixed') {
    const width = sql`make_interval(secs => ${s.period.seconds})`;
    bucket = sql<Date>`date_bin(${width}, ${col}, ${origin}::timestamptz)`;
    end = sql<Date>`date_bin(${width}, ${col}, ${origin}::timestamptz) + ${width}`;
  } else if (s.period.kind === 'months') {
    const n = s.period.months;
    const monthStart = sql`date_trunc('month', ${col}, 'UTC')`;
    const index = sql`((extract(year from ${col} at time zone 'UTC')::int * 12 + extract(month from ${col} at time zone 'UTC')::int - 1) % ${n})`;
    bucket = sql<Date>`(${monthStart} - make_interval(months => ${index}))`;
    end = sql<Date>`(${monthStart} - make_interval(months => ${index}) + make_interval(months => ${n}))`;
  } else {
    bucket = s.from === undefined ? sql<Date>`min(${col})` : sql<Date>`${s.from}::timestamptz`;
    end = s.to === undefined ? sql<Date>`max(${col})` : sql<Date>`${s.to}::timestamptz`;
  }
  const where = [
    sql<boolean>`i.tenant = ${s.tenant}`,
    sql<boolean>`i.entity_id = p.eid`,
    sql<boolean>`i.attr = p.attr`,
    sql<boolean>`not i.deleted`,
    ...rangeConditions(s),
  ];
  const aggs = s.methods.map((m) => sql`${AGGREGATES[m]} as ${sql.ref(m)}`);
  const grouped = s.period.kind !== 'whole';
  const { rows } = await sql<Record<string, unknown> & { eid: string; attr: string; b: Date; e: Date }>`
    select p.eid, p.attr, x.*
    from unnest(${s.pairs.map((p) => p[0])}::text[], ${s.pairs.map((p) => p[1])}::text[]) with ordinality as p(eid, attr, n)
    cross join lateral (
      select ${bucket} as b, ${grouped ? sql`min(${end})` : end} as e, ${sql.join(aggs)}
        from twin.attr_instances i where ${sql.join(where, sql` and `)}
        ${grouped ? sql`group by 1 order by 1` : sql`having count(*) > 0`}) x
    order by p.n, x.b`.execute(db);
  return rows.map((r) => ({
    entityId: r.eid,
    attr: r.attr,
    start: r.b.toISOString(),
    end: r.e.toISOString(),
    values: Object.fromEntries(
      s.methods.map((m) => {
        const v = r[m];
        return [m, v === null || v === undefined ? null : Number(v)];
      }),
    ),
  }));
}

/** Deletes a temporal entity and its whole history (§5.6.16); false when it had none. */
export async function deleteTemporalEntity(db: Db, tenant: string, id: string): Promise<boolean> {
  const { rows } = await sql<{ id: string }>`delete from twin.temporal_entities
    where tenant = ${tenant} and id = ${id} returning id`.execute(db);
  if (rows.length === 0) return false;
  await sql`delete from twin.attr_instances where tenant = ${tenant} and entity_id = ${id}`.execute(db);
  return true;
}

/**
 * Deletes an attribute's history (§5.6.13): every instance (`datasetId` undefined and `all`), the
 * default instances, or one datasetId's; resolves to the number deleted.
 */
export async function deleteAttributeHistory(
  db: Db,
  s: { tenant: string; id: string; attr: string; datasetId?: string | undefined; all: boolean },
): Promise<number> {
  const dataset = s.all ? sql`` : sql` and dataset_id = ${s.datasetId ?? ''}`;
  const r = await sql`delete from twin.attr_instances
    where tenant = ${s.tenant} and entity_id = ${s.id} and attr = ${s.attr}${dataset}`.execute(db);
  const n = Number(r.numAffectedRows ?? 0);
  if (n > 0)
    await sql`update twin.temporal_entities set attrs = array_remove(attrs, ${s.attr}), modified_at = now()
      where tenant = ${s.tenant} and id = ${s.id}
        and not exists (select from twin.attr_instances
          where tenant = ${s.tenant} and entity_id = ${s.id} and attr = ${s.attr})`.execute(db);
  return n;
}

/** One instance of an attribute, locked for the rest of the transaction. */
export async function findInstance(
  db: Db,
  s: { tenant: string; id: string; attr: string; uuid: string },
): Promise<{ value: Instance; ts: Date; deleted: boolean } | undefined> {
  const { rows } = await sql<{ value: Instance; ts: Date; deleted: boolean }>`select value, ts, deleted
    from twin.attr_instances
    where tenant = ${s.tenant} and entity_id = ${s.id} and attr = ${s.attr} and instance_id = ${s.uuid}::uuid
    for update`.execute(db);
  return rows[0];
}

/**
 * Replaces one instance's content in place (§5.6.14), keeping its instanceId and createdAt; the
 * time it sits at follows a changed observedAt (a move across months is a delete and an insert).
 */
export async function replaceInstance(
  db: Db,
  s: { tenant: string; id: string; attr: string; uuid: string; inst: Instance; at: Date },
): Promise<boolean> {
  const { createdAt: _c, modifiedAt: _m, ...stored } = s.inst;
  const observed = typeof s.inst.observedAt === 'string' ? new Date(s.inst.observedAt).toISOString() : null;
  const r = await sql`update twin.attr_instances set value = ${JSON.stringify(stored)}::jsonb,
      observed_at = ${observed}::timestamptz, ts = coalesce(${observed}::timestamptz, created_at),
      modified_at = ${s.at}, dataset_id = ${s.inst.datasetId ?? ''},
      num = ${typeof s.inst.value === 'number' && Number.isFinite(s.inst.value) ? s.inst.value : null}::float8
    where tenant = ${s.tenant} and entity_id = ${s.id} and attr = ${s.attr} and instance_id = ${s.uuid}::uuid`.execute(
    db,
  );
  return Number(r.numAffectedRows ?? 0) > 0;
}

/** Deletes one instance (§5.6.15); false when there is no such instance. */
export async function deleteInstance(
  db: Db,
  s: { tenant: string; id: string; attr: string; uuid: string },
): Promise<boolean> {
  const r = await sql`delete from twin.attr_instances
    where tenant = ${s.tenant} and entity_id = ${s.id} and attr = ${s.attr} and instance_id = ${s.uuid}::uuid`.execute(
    db,
  );
  return Number(r.numAffectedRows ?? 0) > 0;
}

/** Removes a tenant's whole history (with the tenant). */
export async function dropTenantHistory(db: Db, tenant: string): Promise<void> {
  await sql`delete from twin.attr_instances where tenant = ${tenant}`.execute(db);
  await sql`delete from twin.temporal_entities where tenant = ${tenant}`.execute(db);
}

/** The partition name of the month starting at `start` (UTC). */
const partitionName = (start: Date): string =>
  `attr_instances_${start.getUTCFullYear()}${String(start.getUTCMonth() + 1).padStart(2, '0')}`;

/**
 * Creates the monthly partitions from `monthsBack` months before `now` to `monthsAhead` after it,
 * where missing; resolves to the names created. A month whose rows already sit in the default
 * partition is left there (PostgreSQL cannot split them out in place) and reported in `skipped`.
 */
export async function ensurePartitions(
  db: Db,
  options: { now: Date; monthsBack: number; monthsAhead: number },
): Promise<{ created: string[]; skipped: string[] }> {
  const { rows } = await sql<{ name: string }>`select c.relname as name from pg_inherits h
    join pg_class c on c.oid = h.inhrelid join pg_class p on p.oid = h.inhparent
    join pg_namespace n on n.oid = p.relnamespace
    where n.nspname = 'twin' and p.relname = 'attr_instances'`.execute(db);
  const existing = new Set(rows.map((r) => r.name));
  const created: string[] = [];
  const skipped: string[] = [];
  const base = Date.UTC(options.now.getUTCFullYear(), options.now.getUTCMonth(), 1);
  for (let k = -options.monthsBack; k <= options.monthsAhead; k++) {
    const start = new Date(base);
    start.setUTCMonth(start.getUTCMonth() + k);
    const end = new Date(start);
    end.setUTCMonth(end.getUTCMonth() + 1);
    const name = partitionName(start);
    if (existing.has(name)) continue;
    try {
      await sql`create table if not exists ${sql.raw(`twin.${name}`)} partition of twin.attr_instances
        for values from (${sql.lit(start.toISOString())}) to (${sql.lit(end.toISOString())})`.execute(db);
      created.push(name);
    } catch {
      // Rows of that month in the default partition, or another node creating it at this moment.
      skipped.push(name);
    }
  }
  return { created, skipped };
}
