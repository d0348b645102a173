/**
 * The twin's history (可追溯) and the NGSI-LD temporal API (ETSI GS CIM 009 v1.8 §5.6.11–16,
 * §5.7.3–4). Every entity write records the attribute instances it changed, in its own statement
 * (`entityHistory` in temporal.history.ts); the temporal API reads them back — instances in a time range, the last
 * N, simplified temporal values, aggregations per period — and writes history directly (temporal
 * entity create/append, instance changes, deletions). Reads and writes obey the same
 * jurisdiction rules as the entities: a temporal entity lies where its entity lies.
 */
import { enqueueEvent, outboxRider, type Logger, type Rider } from '../kernel/index.ts';
import { auditRider, recordAudit, type AuditEntry } from '../trust/index.ts';
import { sql, type RawBuilder } from 'kysely';
import { areaPathOf, authorizeWrite, canRead, readScope, warmAreas } from './access.ts';
import {
  clip,
  defaultInstance,
  isPlainObject,
  MAIN_MEMBER,
  NGSI_NULL,
  parseInstance,
  type Attrs,
  type Instance,
} from './entity.model.ts';
import { selectorSql } from './entity.query.ts';
import { renderAttribute } from './entity.render.ts';
import { findEntity, tenantRider } from './entity.store.ts';
import { LOCATION, requireTenant, type TwinCall, type TwinRuntime } from './entity.service.ts';
import { NgsiError } from './errors.ts';
import { geoQueryToSql } from './geo.ts';
import { qToSql } from './query.lang.ts';
import {
  instanceUuid,
  MAX_INSTANCES,
  parseTemporalEntity,
  type AggregationMethod,
  type TemporalQuery,
} from './temporal.model.ts';
import {
  aggregateInstances,
  countTemporalEntities,
  deleteAttributeHistory,
  deleteInstance,
  deleteTemporalEntity,
  ensurePartitions,
  findInstance,
  findTemporalEntity,
  instanceRiders,
  queryTemporalEntities,
  replaceInstance,
  selectInstances,
  upsertTemporalEntity,
  type InstanceRow,
  type TemporalEntityRow,
} from './temporal.store.ts';

// --- Reading history ---------------------------------------------------------------------------

const notFound = (id: string): NgsiError =>
  new NgsiError('ResourceNotFound', `No temporal entity ${clip(id)}`);

/** A page of temporal entities in the requested representation. */
export interface TemporalPage {
  entities: Record<string, unknown>[];
  count?: number | undefined;
  lastId?: string | undefined;
  /** Set when some attribute had more instances than one answer holds (temporal pagination). */
  truncated?: { from: string; to: string } | undefined;
}

/** Conditions over temporal entities (alias `e`) for a query, jurisdiction included. */
function temporalConditions(rt: TwinRuntime, tc: TwinCall, spec: TemporalQuery): RawBuilder<boolean>[] {
  const where: RawBuilder<boolean>[] = [];
  const selectors = spec.selectors.map((s) => selectorSql(s, tc.terms));
  if (selectors.every((s) => s !== undefined))
    where.push(sql<boolean>`(${sql.join(selectors, sql`) or (`)})`);
  if (spec.attrs !== undefined)
    where.push(sql<boolean>`e.attrs && ${spec.attrs.map((a) => tc.terms.expand(a))}::text[]`);
  // q and geo-queries select by the entity's current state (its history has no single value to test).
  if (spec.q !== undefined || spec.geoQ !== undefined) {
    const inner: RawBuilder<boolean>[] = [sql<boolean>`e.tenant = ${tc.tenant}`];
    if (spec.q !== undefined) inner.push(qToSql(spec.q, (t) => tc.terms.expand(t)));
    if (spec.geoQ !== undefined) {
      const iri = tc.terms.expand(spec.geoQ.geoproperty);
      const column =
        iri === LOCATION
          ? sql`e.location`
          : sql`st_setsrid(st_geomfromgeojson((e.attrs -> ${iri} -> 0 -> 'value')::text), 4326)`;
      inner.push(geoQueryToSql(spec.geoQ, column));
    }
    // The inner alias `e` (what the q and geo compilers address) shadows the outer one.
    where.push(sql<boolean>`e.id in (select e.id from twin.entities e where ${sql.join(inner, sql` and `)})`);
  }
  where.push(readScope(rt.access, tc.call));
  return where;
}

/** Queries temporal entities (§5.7.4): a page of entities with their history in range. */
export async function queryTemporal(
  rt: TwinRuntime,
  tc: TwinCall,
  spec: TemporalQuery,
): Promise<TemporalPage> {
  const db = rt.database.db;
  await requireTenant(db, tc.tenant);
  const where = temporalConditions(rt, tc, spec);
  const q = { tenant: tc.tenant, where, limit: spec.limit, offset: spec.offset, after: spec.after };
  const [rows, count] = await Promise.all([
    queryTemporalEntities(db, q),
    spec.count ? countTemporalEntities(db, q) : Promise.resolve(undefined),
  ]);
  const page = await renderHistory(rt, tc, rows, spec);
  const last = rows[rows.length - 1];
  return { ...page, count, lastId: rows.length === spec.limit && last ? last.id : undefined };
}

/** Retrieves one temporal entity (§5.7.3); ResourceNotFound when it has no history the caller may see. */
export async function retrieveTemporal(
  rt: TwinRuntime,
  tc: TwinCall,
  id: string,
  spec: TemporalQuery,
): Promise<TemporalPage> {
  const row = await findTemporalEntity(rt.database.db, tc.tenant, id);
  if (!row) {
    await requireTenant(rt.database.db, tc.tenant);
    throw notFound(id);
  }
  if (!canRead(rt.access, tc.call, row.areaPath)) throw notFound(id);
  return renderHistory(rt, tc, [row], spec);
}

/** Reads and renders the history of `rows` as `spec` asks. */
async function renderHistory(
  rt: TwinRuntime,
  tc: TwinCall,
  rows: TemporalEntityRow[],
  spec: TemporalQuery,
): Promise<TemporalPage> {
  const wanted = spec.attrs ? new Set(spec.attrs.map((a) => tc.terms.expand(a))) : undefined;
  const pairs: [string, string][] = rows.flatMap((r) =>
    r.attrs.filter((a) => !wanted || wanted.has(a)).map((a): [string, string] => [r.id, a]),
  );
  const range = { tenant: tc.tenant, pairs, from: spec.from, to: spec.to, timeproperty: spec.timeproperty };
  const shells = new Map<string, Record<string, unknown>>(
    rows.map((r) => [r.id, { id: r.id, type: one(r.types.map((t) => tc.terms.compact(t))) }]),
  );
  if (spec.sysAttrs)
    for (const r of rows)
      Object.assign(shells.get(r.id) ?? {}, { createdAt: r.createdAt, modifiedAt: r.modifiedAt });
  let truncated: TemporalPage['truncated'];
  if (spec.representation === 'aggregatedValues' && spec.aggregation) {
    const aggregates = await aggregateInstances(rt.database.db, { ...range, ...spec.aggregation });
    for (const a of aggregates) {
      const shell = shells.get(a.entityId);
      if (!shell) continue;
      const name = tc.terms.compact(a.attr);
      const out = (shell[name] ?? { type: 'Property' }) as Record<string, unknown>;
      for (const m of spec.aggregation.methods) {
        const list = (out[m] ?? []) as unknown[];
        list.push([a.values[m] ?? null, a.start, a.end]);
        out[m] = list;
      }
      shell[name] = out;
    }
    // The attribute type of each aggregated attribute comes from its latest instance.
    await typeAggregated(rt, tc, shells, pairs);
  } else {
    const instances = await selectInstances(rt.database.db, {
      ...range,
      lastN: spec.lastN,
      max: MAX_INSTANCES,
    });
    const grouped = new Map<string, InstanceRow[]>();
    for (const i of instances) {
      const k = `${i.entityId}\u0000${i.attr}`;
      const list = grouped.get(k) ?? [];
      list.push(i);
      grouped.set(k, list);
    }
    for (const [k, list] of grouped) {
      const [entityId = '', attr = ''] = k.split('\u0000');
      const shell = shells.get(entityId);
      if (!shell) continue;
      let shown = list;
      if (spec.lastN === undefined && list.length > MAX_INSTANCES) {
        shown = list.slice(0, MAX_INSTANCES);
        const lastShown = shown[shown.length - 1];
        const first = shown[0];
        if (first && lastShown) {
          const t = { from: first.time, to: lastShown.time };
          truncated = truncated && truncated.to < t.to ? truncated : t;
        }
      }
      shell[tc.terms.compact(attr)] =
        spec.representation === 'temporalValues'
          ? temporalValues(shown, tc)
          : shown.map((i) => renderHistoryInstance(i, tc, spec.sysAttrs));
    }
  }
  return { entities: [...shells.values()], truncated };
}

const one = <T>(list: T[]): T | T[] => (list.length === 1 ? (list[0] as T) : list);

/** Sets each aggregated attribute's type from its latest instance (one indexed read per attribute). */
async function typeAggregated(
  rt: TwinRuntime,
  tc: TwinCall,
  shells: Map<string, Record<string, unknown>>,
  pairs: [string, string][],
): Promise<void> {
  const present = pairs.filter(([id, attr]) => shells.get(id)?.[tc.terms.compact(attr)] !== undefined);
  if (present.length === 0) return;
  const latest = await selectInstances(rt.database.db, {
    tenant: tc.tenant,
    pairs: present,
    timeproperty: 'observedAt',
    lastN: 1,
    max: 1,
  });
  for (const i of latest) {
    const out = shells.get(i.entityId)?.[tc.terms.compact(i.attr)] as Record<string, unknown> | undefined;
    if (out) out['type'] = i.value.type;
  }
}

/** One instance of history in the normalized temporal representation (§4.5.8). */
function renderHistoryInstance(i: InstanceRow, tc: TwinCall, sysAttrs: boolean): Record<string, unknown> {
  const rendered = renderAttribute([i.value], tc.terms, { format: 'normalized', sysAttrs: false }) as Record<
    string,
    unknown
  >;
  const out: Record<string, unknown> = {
    ...rendered,
    instanceId: `urn:ngsi-ld:attribute:instance:${i.uuid}`,
  };
  if (i.deleted) out['deletedAt'] = i.createdAt;
  if (sysAttrs) {
    out['createdAt'] = i.createdAt;
    out['modifiedAt'] = i.modifiedAt;
  }
  return out;
}

/** The simplified temporal representation's list member per attribute type (§4.5.9). */
const VALUES_MEMBER: Record<string, string> = {
  Property: 'values',
  GeoProperty: 'values',
  Relationship: 'objects',
  LanguageProperty: 'languageMaps',
  VocabProperty: 'vocabs',
  ListProperty: 'valueLists',
  ListRelationship: 'objectLists',
  JsonProperty: 'jsons',
};

/** An attribute's history as temporal values: one object per datasetId with [value, time] pairs. */
function temporalValues(list: InstanceRow[], tc: TwinCall): unknown {
  const byDataset = new Map<string, InstanceRow[]>();
  for (const i of list) {
    const k = i.value.datasetId ?? '';
    byDataset.set(k, [...(byDataset.get(k) ?? []), i]);
  }
  const out = [...byDataset.values()].map((rows) => {
    const type = rows[rows.length - 1]?.value.type ?? 'Property';
    const member = VALUES_MEMBER[type] ?? 'values';
    const main = MAIN_MEMBER[type] ?? 'value';
    const values = rows.map((r) => {
      let v = r.value[main];
      if (type === 'VocabProperty' && typeof v === 'string' && v !== NGSI_NULL) v = tc.terms.compact(v);
      return [v, r.time];
    });
    const o: Record<string, unknown> = { type, [member]: values };
    const ds = rows[0]?.value.datasetId;
    if (ds !== undefined) o['datasetId'] = ds;
    return o;
  });
  return one(out);
}

// --- Writing history ---------------------------------------------------------------------------

const entry = (action: string, id: string, details: Record<string, unknown>): AuditEntry => ({
  action: `twin.temporal.${action}`,
  resourceType: 'ngsi-ld-temporal-entity',
  resourceId: id,
  details,
});

/** Where a temporal entity lies: where its entity lies, else its latest location instance, else city-wide. */
async function areaOf(rt: TwinRuntime, tc: TwinCall, id: string, attrs: Attrs): Promise<string | null> {
  const current = await findEntity(rt.database.db, tc.tenant, id);
  if (current) return current.areaPath;
  const locations = attrs[LOCATION];
  if (!locations || locations.length === 0) return null;
  const latest = [...locations].sort((a, b) => (a.observedAt ?? '').localeCompare(b.observedAt ?? '')).pop();
  await warmAreas(rt.database);
  return areaPathOf(rt.database, defaultInstance([latest as Instance])?.value ?? null);
}

/**
 * Creates a temporal entity or adds instances to an existing one (§5.6.11 POST /temporal/entities):
 * resolves to true when it was created. Only history is written; the entity itself is untouched.
 */
export async function upsertTemporal(rt: TwinRuntime, tc: TwinCall, body: unknown): Promise<boolean> {
  const at = new Date();
  const input = parseTemporalEntity(body, tc.terms, { now: at.toISOString() });
  const old = await findTemporalEntity(rt.database.db, tc.tenant, input.id);
  if (old && !canRead(rt.access, tc.call, old.areaPath)) throw notFound(input.id);
  const areaPath = old?.areaPath ?? (await areaOf(rt, tc, input.id, input.attrs));
  authorizeWrite(rt.access, tc.call, [old?.areaPath ?? areaPath, areaPath]);
  const types = old ? [...old.types, ...input.types.filter((t) => !old.types.includes(t))] : input.types;
  return writeHistory(rt, tc, {
    id: input.id,
    types,
    areaPath,
    attrs: input.attrs,
    at,
    action: old ? 'append' : 'create',
  });
}

/** Adds attribute instances to a temporal entity (§5.6.12 POST /temporal/entities/{id}/attrs). */
export async function appendTemporal(
  rt: TwinRuntime,
  tc: TwinCall,
  id: string,
  body: unknown,
): Promise<void> {
  const at = new Date();
  const input = parseTemporalEntity(body, tc.terms, { now: at.toISOString(), fragment: true, id });
  if (Object.keys(input.attrs).length === 0)
    throw new NgsiError('BadRequestData', 'No attribute instances to add');
  const old = await visibleTemporal(rt, tc, id);
  authorizeWrite(rt.access, tc.call, [old.areaPath]);
  await writeHistory(rt, tc, {
    id,
    types: old.types,
    areaPath: old.areaPath,
    attrs: input.attrs,
    at,
    action: 'append',
  });
}

/** Writes instances with the temporal entity row, the tenant (first write), audit and outbox: one statement. */
async function writeHistory(
  rt: TwinRuntime,
  tc: TwinCall,
  w: { id: string; types: string[]; areaPath: string | null; attrs: Attrs; at: Date; action: string },
): Promise<boolean> {
  const instances = Object.entries(w.attrs).flatMap(([attr, list]) => list.map((inst) => ({ attr, inst })));
  const attributes = Object.keys(w.attrs).map((a) => tc.terms.compact(a));
  const riders: Rider[] = [
    ...instanceRiders(tc.tenant, w.id, instances, w.at),
    auditRider(tc.call, [
      { ...entry(w.action, w.id, { tenant: tc.tenant, attributes: attributes.slice(0, 100) }) },
    ]),
    outboxRider([
      {
        topic: `twin.temporal.${w.action}`,
        payload: {
          tenant: tc.tenant,
          id: w.id,
          attributes: attributes.slice(0, 200),
          instances: instances.length,
        },
      },
    ]),
  ];
  if (tc.tenant !== '') riders.unshift(tenantRider(tc.tenant));
  return upsertTemporalEntity(
    rt.database.db,
    {
      tenant: tc.tenant,
      id: w.id,
      types: w.types,
      areaPath: w.areaPath,
      attrs: Object.keys(w.attrs),
      at: w.at,
    },
    riders,
  );
}

/** The temporal entity if the caller may see it; ResourceNotFound otherwise. */
async function visibleTemporal(rt: TwinRuntime, tc: TwinCall, id: string): Promise<TemporalEntityRow> {
  const row = await findTemporalEntity(rt.database.db, tc.tenant, id);
  if (!row) {
    await requireTenant(rt.database.db, tc.tenant);
    throw notFound(id);
  }
  if (!canRead(rt.access, tc.call, row.areaPath)) throw notFound(id);
  return row;
}

/** Runs a history deletion or change in a transaction with its audit record and outbox event. */
async function changeHistory<T>(
  rt: TwinRuntime,
  tc: TwinCall,
  id: string,
  action: string,
  details: Record<string, unknown>,
  fn: (trx: Parameters<Parameters<TwinRuntime['database']['transact']>[0]>[0]) => Promise<T>,
): Promise<T> {
  const row = await visibleTemporal(rt, tc, id);
  authorizeWrite(rt.access, tc.call, [row.areaPath]);
  return rt.database.transact(async (trx) => {
    const result = await fn(trx);
    await recordAudit(trx, tc.call, entry(action, id, { tenant: tc.tenant, ...details }));
    await enqueueEvent(trx, {
      topic: `twin.temporal.${action}`,
      payload: { tenant: tc.tenant, id, ...details },
    });
    return result;
  });
}

/** Deletes a temporal entity and all its history (§5.6.16). The entity itself is untouched. */
export async function removeTemporal(rt: TwinRuntime, tc: TwinCall, id: string): Promise<void> {
  await changeHistory(rt, tc, id, 'delete', {}, async (trx) => {
    if (!(await deleteTemporalEntity(trx, tc.tenant, id))) throw notFound(id);
  });
}

/** Deletes an attribute's history (§5.6.13): all instances, or those of one datasetId (default: the default instances). */
export async function removeTemporalAttribute(
  rt: TwinRuntime,
  tc: TwinCall,
  id: string,
  attrName: string,
  options: { datasetId?: string | undefined; deleteAll: boolean },
): Promise<void> {
  const attr = tc.terms.expand(attrName);
  await changeHistory(rt, tc, id, 'delete-attribute', { attribute: attrName }, async (trx) => {
    const n = await deleteAttributeHistory(trx, {
      tenant: tc.tenant,
      id,
      attr,
      datasetId: options.datasetId,
      all: options.deleteAll,
    });
    if (n === 0)
      throw new NgsiError(
        'ResourceNotFound',
        `Temporal entity ${clip(id)} has no history of ${clip(attrName)}${options.datasetId === undefined ? '' : ` with datasetId ${clip(options.datasetId)}`}`,
      );
  });
}

/** The UUID of an instanceId parameter; ResourceNotFound for anything that cannot be one of ours. */
function uuidOf(id: string, attrName: string, instanceId: string): string {
  const uuid = instanceUuid(instanceId);
  if (!uuid)
    throw new NgsiError(
      'ResourceNotFound',
      `No instance ${clip(instanceId)} of ${clip(attrName)} in ${clip(id)}`,
    );
  return uuid;
}

/** Modifies one attribute instance in place (§5.6.14); its instanceId stays. */
export async function patchTemporalInstance(
  rt: TwinRuntime,
  tc: TwinCall,
  id: string,
  attrName: string,
  instanceId: string,
  body: unknown,
): Promise<void> {
  const at = new Date();
  const attr = tc.terms.expand(attrName);
  const uuid = uuidOf(id, attrName, instanceId);
  if (!isPlainObject(body))
    throw new NgsiError('BadRequestData', 'The instance fragment must be a JSON object');
  // The body may be the attribute (`{name: {...}}`) or the bare instance fragment.
  const fragment = isPlainObject(body[attrName]) ? body[attrName] : body;
  const { instanceId: _i, ...rest } = fragment;
  await changeHistory(rt, tc, id, 'update-instance', { attribute: attrName, instanceId }, async (trx) => {
    const found = await findInstance(trx, { tenant: tc.tenant, id, attr, uuid });
    if (!found)
      throw new NgsiError(
        'ResourceNotFound',
        `No instance ${clip(instanceId)} of ${clip(attrName)} in ${clip(id)}`,
      );
    if (rest['type'] !== undefined && rest['type'] !== found.value.type)
      throw new NgsiError(
        'BadRequestData',
        `${attrName}: an instance keeps its attribute type (${found.value.type})`,
      );
    const merged = parseInstance(attrName, { ...found.value, ...rest }, tc.terms, at.toISOString());
    await replaceInstance(trx, { tenant: tc.tenant, id, attr, uuid, inst: merged, at });
  });
}

/** Deletes one attribute instance (§5.6.15). */
export async function removeTemporalInstance(
  rt: TwinRuntime,
  tc: TwinCall,
  id: string,
  attrName: string,
  instanceId: string,
): Promise<void> {
  const attr = tc.terms.expand(attrName);
  const uuid = uuidOf(id, attrName, instanceId);
  await changeHistory(rt, tc, id, 'delete-instance', { attribute: attrName, instanceId }, async (trx) => {
    if (!(await deleteInstance(trx, { tenant: tc.tenant, id, attr, uuid })))
      throw new NgsiError(
        'ResourceNotFound',
        `No instance ${clip(instanceId)} of ${clip(attrName)} in ${clip(id)}`,
      );
  });
}

/** Aggregation methods, re-exported for the routes' documentation. */
export type { AggregationMethod };

/** Partition upkeep: the last month and the next three exist; checked at start and every 12 hours. */
export function maintainHistory(
  database: TwinRuntime['database'],
  logger: Logger,
): { ready: Promise<void>; stop: () => void } {
  const run = async () => {
    try {
      const r = await ensurePartitions(database.db, { now: new Date(), monthsBack: 1, monthsAhead: 3 });
      if (r.created.length > 0) logger.info({ partitions: r.created }, 'twin history partitions created');
      if (r.skipped.length > 0)
        logger.warn({ partitions: r.skipped }, 'twin history months left in the default partition');
    } catch (e) {
      logger.warn({ err: (e as Error).message }, 'twin history partition upkeep failed; will retry');
    }
  };
  const timer = setInterval(() => void run(), 12 * 3_600_000);
  timer.unref();
  return { ready: run(), stop: () => clearInterval(timer) };
}
