/**
 * NGSI-LD context information provision and consumption for single entities and batches
 * (ETSI GS CIM 009 v1.8 §5.6, §5.7.1, §5.6.7–10): create, retrieve, replace, merge, delete, the
 * attribute operations and the batch operations. A single-entity write reads the entity, checks
 * the caller may write in its old and new areas, and writes the change with its audit record and
 * outbox event as one statement that applies only if the entity is still at the version read
 * (optimistic concurrency: no lost update, no lock held across round trips; after a few
 * collisions the write falls back to a transaction holding the row lock, so it always ends).
 * A batch writes each member the same way, on its own.
 */
import { outboxRider, type Database, type Rider } from '../kernel/index.ts';
import { auditRider, recordRefusal, type AuditEntry, type CallContext } from '../trust/index.ts';
import { areaPathOf, authorizeWrite, canRead, warmAreas, type TwinAccess } from './access.ts';
import {
  checkEntityId,
  clip,
  show,
  defaultInstance,
  INSTANCE_MEMBERS,
  MAIN_MEMBER,
  VALUE_MEMBERS,
  isPlainObject,
  parseAttribute,
  parseAttributes,
  parseEntity,
  parseInstance,
  parseScopes,
  parseTypes,
  type Attrs,
  type EntityInput,
  type Instance,
  type Terms,
} from './entity.model.ts';
import {
  deleteEntity,
  findEntity,
  insertEntity,
  tenantExists,
  tenantRider,
  updateEntity,
  type StoredEntity,
} from './entity.store.ts';
import type { EntityRecord } from './entity.render.ts';
import { NgsiError, NGSI_ERROR_BASE } from './errors.ts';
import { entityHistory, type AttributeChanges } from './temporal.history.ts';

type Trx = Parameters<Parameters<Database['transact']>[0]>[0];

/** The IRI of the default `location` GeoProperty (core context). */
export const LOCATION = 'https://uri.etsi.org/ngsi-ld/location';

/** What every twin service call needs beyond its arguments. */
export interface TwinRuntime {
  database: Database;
  access: TwinAccess;
  /** Largest batch (entities per batch operation). */
  maxBatch: number;
}

/** One NGSI-LD request: who calls, in which tenant, with which @context. */
export interface TwinCall {
  call: CallContext;
  tenant: string;
  terms: Terms;
}

const notFound = (id: string): NgsiError => new NgsiError('ResourceNotFound', `No entity ${clip(id)}`);

/** The result of an attribute operation (§5.2.18 UpdateResult), names compacted. */
export interface UpdateResult {
  updated: string[];
  notUpdated: { attributeName: string; reason: string }[];
}

/** The result of a batch operation (§5.2.16 BatchOperationResult). */
export interface BatchResult {
  success: string[];
  errors: { entityId: string; error: { type: string; title: string; status: number; detail: string } }[];
  /** Ids created (upsert answers 201 with them when any were created). */
  created: string[];
}

// --- Helpers ------------------------------------------------------------------------------------

/** The `location` geometry (default instance, else the first) as GeoJSON text, or null. */
function locationOf(attrs: Attrs): { geojson: string | null; geometry: unknown } {
  const list = attrs[LOCATION];
  const inst = defaultInstance(list) ?? list?.[0];
  if (inst?.type !== 'GeoProperty' || inst.value === undefined) return { geojson: null, geometry: null };
  return { geojson: JSON.stringify(inst.value), geometry: inst.value };
}

const areaCode = (path: string | null): string | null =>
  path === null ? null : (path.split('/').pop() ?? null);

/** Throws NonexistentTenant unless the tenant exists (the default tenant always does). */
export async function requireTenant(db: Trx | Database['db'], tenant: string): Promise<void> {
  if (tenant !== '' && !(await tenantExists(db, tenant)))
    throw new NgsiError('NonexistentTenant', `No tenant ${clip(tenant)}`);
}

/** A change to one entity: what is recorded in the audit trail and announced on the bus. */
interface Change {
  action: string;
  id: string;
  areaPath: string | null;
  types: string[];
  attributes?: string[];
  /** Attribute IRIs created, updated and deleted (the outbox event carries them for subscriptions). */
  changes?: AttributeChanges;
  /** The entity as this write leaves it: the event carries it (when small) so notifications show this state. */
  snapshot?: EntityRecord;
}

/** Largest entity snapshot an outbox event carries; a larger entity is read back by the notifier. */
const MAX_SNAPSHOT_BYTES = 64 * 1024;

/** The snapshot as event payload, or nothing when it is too large to travel in the event. */
function snapshotPayload(snapshot: EntityRecord | undefined): { entity?: EntityRecord } {
  if (!snapshot) return {};
  return JSON.stringify(snapshot.attrs).length <= MAX_SNAPSHOT_BYTES ? { entity: snapshot } : {};
}

/** The change's audit record and outbox event, riding along with the statement that makes it. */
function changeRiders(tc: TwinCall, change: Change): Rider[] {
  const { action, id, types, attributes } = change;
  return [
    auditRider(tc.call, [
      {
        action: `twin.entity.${action}`,
        resourceType: 'ngsi-ld-entity',
        resourceId: id,
        area: areaCode(change.areaPath),
        details: {
          tenant: tc.tenant,
          types,
          ...(attributes ? { attributes: attributes.slice(0, 100) } : {}),
        },
      },
    ]),
    outboxRider([
      {
        topic: `twin.entity.${action}`,
        payload: {
          tenant: tc.tenant,
          id,
          types,
          ...(attributes ? { attributes: attributes.slice(0, 200) } : {}),
          ...(change.changes ?? {}),
          ...snapshotPayload(change.snapshot),
        },
      },
    ]),
  ];
}

/** Runs a write; a refusal of a known caller (403) is recorded in the audit trail, in its own transaction. */
async function audit<T>(rt: TwinRuntime, tc: TwinCall, entry: AuditEntry, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof NgsiError && e.type === 'Forbidden' && tc.call.actor.kind !== 'anonymous')
      await recordRefusal(rt.database, tc.call, {
        ...entry,
        details: { tenant: tc.tenant, reason: e.detail },
      });
    throw e;
  }
}

/** The stored row for a parsed entity (after `warmAreas`). */
function entityWrite(rt: TwinRuntime, tc: TwinCall, e: EntityInput, at: Date) {
  const loc = locationOf(e.attrs);
  const areaPath = areaPathOf(rt.database, loc.geometry);
  return {
    tenant: tc.tenant,
    id: e.id,
    types: e.types,
    scopes: e.scopes ?? null,
    attrs: e.attrs,
    location: loc.geojson,
    areaPath,
    at,
  };
}

/** The entity, if it exists and the caller may see it: ResourceNotFound or NonexistentTenant otherwise. */
async function findVisible(
  rt: TwinRuntime,
  db: Trx | Database['db'],
  tc: TwinCall,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<StoredEntity> {
  const e = await findEntity(db, tc.tenant, id, options);
  if (!e) {
    await requireTenant(db, tc.tenant);
    throw notFound(id);
  }
  if (!canRead(rt.access, tc.call, e.areaPath)) throw notFound(id);
  return e;
}

/** What a write does to the entity it read: rewrite it, delete it, or leave it as it is. */
type Plan<R> =
  | { write: 'update'; next: EntityContent; change: Omit<Change, 'id' | 'areaPath' | 'types'>; result: R }
  | { write: 'delete'; result: R }
  | { write: 'none'; result: R };

interface EntityContent {
  types: string[];
  scopes: string[] | null;
  attrs: Attrs;
}

/** Optimistic attempts before a write takes the row lock. */
const OPTIMISTIC_ATTEMPTS = 3;

/**
 * Applies `plan` (a pure function of the entity read) to entity `id`: authorizes the old and new
 * areas, then writes the result with its audit record and outbox event in one statement that
 * applies only to the version read. When another write got in between, reads and plans again;
 * after `OPTIMISTIC_ATTEMPTS` collisions it does so in a transaction holding the row lock.
 */
async function modify<R>(
  rt: TwinRuntime,
  tc: TwinCall,
  id: string,
  at: Date,
  plan: (old: StoredEntity) => Plan<R>,
): Promise<R> {
  await warmAreas(rt.database);
  const attempt = async (db: Trx | Database['db'], lock: boolean): Promise<{ done: boolean; result: R }> => {
    const old = await findVisible(rt, db, tc, id, { forUpdate: lock });
    const p = plan(old);
    if (p.write === 'none') return { done: true, result: p.result };
    if (p.write === 'delete') {
      authorizeWrite(rt.access, tc.call, [old.areaPath]);
      const change = { action: 'delete', id, areaPath: old.areaPath, types: old.types };
      const history = entityHistory(tc, { id, before: old, after: undefined, at });
      return {
        done: await deleteEntity(db, { tenant: tc.tenant, id, version: old.version }, [
          ...changeRiders(tc, change),
          ...history.riders,
        ]),
        result: p.result,
      };
    }
    const w = entityWrite(
      rt,
      tc,
      { id, types: p.next.types, scopes: p.next.scopes ?? undefined, attrs: p.next.attrs },
      at,
    );
    authorizeWrite(rt.access, tc.call, [old.areaPath, w.areaPath]);
    const history = entityHistory(tc, {
      id,
      before: old,
      after: { types: p.next.types, areaPath: w.areaPath, attrs: p.next.attrs },
      at,
    });
    const change = {
      ...p.change,
      id,
      areaPath: w.areaPath,
      types: p.next.types,
      changes: history.changes,
      snapshot: {
        id,
        types: p.next.types,
        scopes: p.next.scopes,
        createdAt: old.createdAt,
        modifiedAt: at.toISOString(),
        attrs: p.next.attrs,
      },
    };
    return {
      done: await updateEntity(db, w, old.version, [...changeRiders(tc, change), ...history.riders]),
      result: p.result,
    };
  };
  for (let n = 1; n <= OPTIMISTIC_ATTEMPTS; n++) {
    const r = await attempt(rt.database.db, false);
    if (r.done) return r.result;
  }
  const r = await rt.database.transact((trx) => attempt(trx, true));
  if (!r.done) throw new Error(`entity ${id} changed while locked`);
  return r.result;
}

const compactNames = (tc: TwinCall, iris: string[]): string[] => iris.map((i) => tc.terms.compact(i));

// --- Single-entity operations ------------------------------------------------------------------

/** Creates an entity (§5.6.1); AlreadyExists when the id is taken. Creates the tenant on first write. */
export async function createEntity(rt: TwinRuntime, tc: TwinCall, body: unknown): Promise<string> {
  const at = new Date();
  const input = parseEntity(body, tc.terms, { now: at.toISOString() });
  return audit(
    rt,
    tc,
    { action: 'twin.entity.create', resourceType: 'ngsi-ld-entity', resourceId: input.id },
    async () => {
      if (!(await insertNew(rt, tc, input, at)))
        throw new NgsiError('AlreadyExists', `Entity ${clip(input.id)} exists already`);
      return input.id;
    },
  );
}

/**
 * Inserts a new entity with its audit record and outbox event (and its tenant, on the tenant's
 * first write) in one statement; false, writing nothing, when the id is taken.
 */
async function insertNew(rt: TwinRuntime, tc: TwinCall, input: EntityInput, at: Date): Promise<boolean> {
  await warmAreas(rt.database);
  const w = entityWrite(rt, tc, input, at);
  authorizeWrite(rt.access, tc.call, [w.areaPath]);
  const history = entityHistory(tc, {
    id: input.id,
    before: undefined,
    after: { types: input.types, areaPath: w.areaPath, attrs: input.attrs },
    at,
  });
  const riders = [
    ...changeRiders(tc, {
      action: 'create',
      id: input.id,
      areaPath: w.areaPath,
      types: input.types,
      attributes: compactNames(tc, Object.keys(input.attrs)),
      changes: history.changes,
      snapshot: {
        id: input.id,
        types: input.types,
        scopes: input.scopes ?? null,
        createdAt: at.toISOString(),
        modifiedAt: at.toISOString(),
        attrs: input.attrs,
      },
    }),
    ...history.riders,
  ];
  return insertEntity(rt.database.db, w, tc.tenant === '' ? riders : [tenantRider(tc.tenant), ...riders]);
}

/** Retrieves an entity visible to the caller (§5.7.1); ResourceNotFound otherwise. */
export async function retrieveEntity(rt: TwinRuntime, tc: TwinCall, id: string): Promise<StoredEntity> {
  return findVisible(rt, rt.database.db, tc, id);
}

/** Deletes an entity (§5.6.6). */
export async function removeEntity(rt: TwinRuntime, tc: TwinCall, id: string): Promise<void> {
  await audit(rt, tc, { action: 'twin.entity.delete', resourceType: 'ngsi-ld-entity', resourceId: id }, () =>
    modify(rt, tc, id, new Date(), () => ({ write: 'delete', result: undefined })),
  );
}

/** Replaces an entity whole (§5.6.18, PUT): new types, scope and attributes; createdAt kept. */
export async function replaceEntity(rt: TwinRuntime, tc: TwinCall, id: string, body: unknown): Promise<void> {
  const at = new Date();
  const input = parseEntity(body, tc.terms, { now: at.toISOString(), id });
  await audit(rt, tc, { action: 'twin.entity.replace', resourceType: 'ngsi-ld-entity', resourceId: id }, () =>
    modify(rt, tc, id, at, () => replacePlan(tc, input)),
  );
}

/** The plan of a whole-entity replacement (PUT, batch upsert with replace). */
const replacePlan = (tc: TwinCall, input: EntityInput): Plan<undefined> => ({
  write: 'update',
  next: { types: input.types, scopes: input.scopes ?? null, attrs: input.attrs },
  change: { action: 'replace', attributes: compactNames(tc, Object.keys(input.attrs)) },
  result: undefined,
});

/** Merges a fragment into an entity (§5.6.17, PATCH): see `mergeAttrs`; types added, scope replaced. */
export async function mergeEntity(rt: TwinRuntime, tc: TwinCall, id: string, body: unknown): Promise<void> {
  const at = new Date();
  const now = at.toISOString();
  if (!isPlainObject(body)) throw new NgsiError('BadRequestData', 'The fragment must be a JSON object');
  if (body['id'] !== undefined && body['id'] !== id)
    throw new NgsiError('BadRequestData', 'id: the body id differs from the id in the URL');
  const types = body['type'] === undefined ? [] : parseTypes(body['type'], tc.terms);
  const scopes = body['scope'] === undefined ? undefined : parseScopes(body['scope']);
  const patch = parseAttributes(body, tc.terms, { now, allowNull: true });
  await audit(rt, tc, { action: 'twin.entity.merge', resourceType: 'ngsi-ld-entity', resourceId: id }, () =>
    modify(rt, tc, id, at, (old) =>
      mergePlan(old, { types, scopes, patch }, now, compactNames(tc, Object.keys(patch))),
    ),
  );
}

/** The plan of a merge (PATCH, batch merge): see `mergeAttrs`; types added, scope replaced if given. */
const mergePlan = (
  old: StoredEntity,
  fragment: { types: string[]; scopes: string[] | undefined; patch: Attrs },
  now: string,
  attributes: string[],
): Plan<undefined> => ({
  write: 'update',
  next: {
    types: addTypes(old.types, fragment.types),
    scopes: fragment.scopes ?? old.scopes,
    attrs: mergeAttrs(old.attrs, fragment.patch, now),
  },
  change: { action: 'merge', attributes },
  result: undefined,
});

/** The types of an entity with `added` appended (existing ones kept in place). */
const addTypes = (types: string[], added: string[]): string[] => [
  ...types,
  ...added.filter((t) => !types.includes(t)),
];

/**
 * Merge semantics: an attribute set to null is deleted; an instance with the same datasetId as a
 * stored one is merged into it (members replaced, sub-attributes merged, createdAt kept); other
 * instances are added.
 */
export function mergeAttrs(stored: Attrs, patch: Attrs, now: string): Attrs {
  const deleted = new Set(Object.entries(patch).flatMap(([iri, list]) => (list.length === 0 ? [iri] : [])));
  const out: Attrs = Object.fromEntries(Object.entries(stored).filter(([iri]) => !deleted.has(iri)));
  for (const [iri, instances] of Object.entries(patch)) {
    if (instances.length === 0) continue;
    const list = [...(out[iri] ?? [])];
    for (const inst of instances) {
      const at = list.findIndex((o) => o.datasetId === inst.datasetId);
      if (at >= 0) list[at] = mergeInstance(list[at] as Instance, inst, now);
      else if (inst.datasetId === undefined) list.unshift(inst);
      else list.push(inst);
    }
    out[iri] = list;
  }
  return out;
}

/** The members that carry an instance's value (one per attribute type). */
const MAIN_MEMBERS: readonly string[] = VALUE_MEMBERS;

/** One instance merged into another: the patch's members win, sub-attributes merge recursively. */
function mergeInstance(old: Instance, patch: Instance, now: string): Instance {
  // A change of attribute type drops the old type's value members.
  const out: Instance =
    patch.type === old.type
      ? { ...old }
      : (Object.fromEntries(Object.entries(old).filter(([k]) => !MAIN_MEMBERS.includes(k))) as Instance);
  for (const [k, v] of Object.entries(patch)) {
    if (k === 'createdAt') continue;
    if (!INSTANCE_MEMBERS.has(k) && isPlainObject(old[k]))
      out[k] = mergeInstance(old[k] as Instance, v as Instance, now);
    else out[k] = v;
  }
  out.modifiedAt = now;
  return out;
}

/** Replaces the stored instance with the same datasetId (createdAt kept) or adds the new one. */
function putInstances(list: Instance[], instances: Instance[]): Instance[] {
  const out = [...list];
  for (const inst of instances) {
    const at = out.findIndex((o) => o.datasetId === inst.datasetId);
    if (at >= 0) out[at] = { ...inst, createdAt: (out[at] as Instance).createdAt ?? inst.createdAt };
    else if (inst.datasetId === undefined) out.unshift(inst);
    else out.push(inst);
  }
  return out;
}

/**
 * Appends attributes (§5.6.3, POST …/attrs): new attributes are added; existing ones are
 * overwritten instance by datasetId unless `noOverwrite`, when they are reported as not updated.
 */
export async function appendAttributes(
  rt: TwinRuntime,
  tc: TwinCall,
  id: string,
  body: unknown,
  options: { noOverwrite: boolean },
): Promise<UpdateResult> {
  const at = new Date();
  if (!isPlainObject(body)) throw new NgsiError('BadRequestData', 'The fragment must be a JSON object');
  const patch = parseAttributes(body, tc.terms, { now: at.toISOString() });
  const types = body['type'] === undefined ? [] : parseTypes(body['type'], tc.terms);
  return audit(rt, tc, { action: 'twin.entity.append', resourceType: 'ngsi-ld-entity', resourceId: id }, () =>
    modify(rt, tc, id, at, (old) => {
      const attrs: Attrs = { ...old.attrs };
      const result: UpdateResult = { updated: [], notUpdated: [] };
      for (const [iri, instances] of Object.entries(patch)) {
        const name = tc.terms.compact(iri);
        const existing = attrs[iri];
        if (existing && options.noOverwrite) {
          const fresh = instances.filter((i) => !existing.some((o) => o.datasetId === i.datasetId));
          if (fresh.length < instances.length)
            result.notUpdated.push({
              attributeName: name,
              reason: 'The attribute exists and noOverwrite was asked',
            });
          if (fresh.length === 0) continue;
          attrs[iri] = putInstances(existing, fresh);
        } else attrs[iri] = putInstances(existing ?? [], instances);
        result.updated.push(name);
      }
      const nextTypes = addTypes(old.types, types);
      if (result.updated.length === 0 && nextTypes.length === old.types.length)
        return { write: 'none', result };
      return {
        write: 'update',
        next: { types: nextTypes, scopes: old.scopes, attrs },
        change: { action: 'append', attributes: result.updated },
        result,
      };
    }),
  );
}

/**
 * Updates attributes (§5.6.2, PATCH …/attrs): only attributes (and datasetId instances) that exist
 * are replaced; the others are reported as not updated.
 */
export async function updateAttributes(
  rt: TwinRuntime,
  tc: TwinCall,
  id: string,
  body: unknown,
): Promise<UpdateResult> {
  const at = new Date();
  if (!isPlainObject(body)) throw new NgsiError('BadRequestData', 'The fragment must be a JSON object');
  const patch = parseAttributes(body, tc.terms, { now: at.toISOString() });
  return audit(rt, tc, { action: 'twin.entity.update', resourceType: 'ngsi-ld-entity', resourceId: id }, () =>
    modify(rt, tc, id, at, (old) => {
      const attrs: Attrs = { ...old.attrs };
      const result: UpdateResult = { updated: [], notUpdated: [] };
      for (const [iri, instances] of Object.entries(patch)) {
        const name = tc.terms.compact(iri);
        const existing = attrs[iri];
        const known = existing
          ? instances.filter((i) => existing.some((o) => o.datasetId === i.datasetId))
          : [];
        if (!existing || known.length === 0) {
          result.notUpdated.push({
            attributeName: name,
            reason: 'The attribute (or this datasetId) does not exist',
          });
          continue;
        }
        attrs[iri] = putInstances(existing, known);
        result.updated.push(name);
      }
      if (result.updated.length === 0) return { write: 'none', result };
      return {
        write: 'update',
        next: { types: old.types, scopes: old.scopes, attrs },
        change: { action: 'update', attributes: result.updated },
        result,
      };
    }),
  );
}

/**
 * Partial attribute update (§5.6.4, PATCH …/attrs/{attrId}): the members sent replace the stored
 * instance's (the one with the body's datasetId), sub-attributes merge; ResourceNotFound when the
 * attribute or that instance does not exist.
 */
export async function patchAttribute(
  rt: TwinRuntime,
  tc: TwinCall,
  id: string,
  attrName: string,
  body: unknown,
): Promise<void> {
  const at = new Date();
  const now = at.toISOString();
  if (!isPlainObject(body))
    throw new NgsiError('BadRequestData', 'The attribute fragment must be a JSON object');
  const iri = tc.terms.expand(attrName);
  const datasetId = body['datasetId'];
  await audit(rt, tc, { action: 'twin.entity.update', resourceType: 'ngsi-ld-entity', resourceId: id }, () =>
    modify(rt, tc, id, at, (old) => {
      const list = old.attrs[iri];
      const index = list?.findIndex((i) => i.datasetId === datasetId) ?? -1;
      const stored = list?.[index];
      if (!list || !stored)
        throw new NgsiError(
          'ResourceNotFound',
          `Entity ${clip(id)} has no attribute ${clip(attrName)}${datasetId === undefined ? '' : ` with datasetId ${clip(show(datasetId))}`}`,
        );
      // A fragment without its value member (only observedAt, a sub-attribute…) keeps the stored value.
      const type = typeof body['type'] === 'string' ? body['type'] : stored.type;
      const main = MAIN_MEMBER[type] ?? 'value';
      const raw: Record<string, unknown> = { type, ...body };
      if (!(main in body) && type === stored.type) raw[main] = rawMain(stored, main, tc);
      const inst = parseInstance(attrName, raw, tc.terms, now);
      const nextList = [...list];
      nextList[index] = mergeInstance(stored, inst, now);
      return attributeWrite(old, { ...old.attrs, [iri]: nextList }, attrName);
    }),
  );
}

/** The plan of a write that changes one attribute of `old`. */
const attributeWrite = (old: StoredEntity, attrs: Attrs, attrName: string): Plan<undefined> => ({
  write: 'update',
  next: { types: old.types, scopes: old.scopes, attrs },
  change: { action: 'update', attributes: [attrName] },
  result: undefined,
});

/** A stored main member in the shape `parseInstance` accepts (vocab compacted back to terms). */
function rawMain(stored: Instance, main: string, tc: TwinCall): unknown {
  if (main === 'vocab') {
    const v = stored.vocab;
    return Array.isArray(v) ? v.map((x) => tc.terms.compact(x)) : tc.terms.compact(v ?? '');
  }
  if (main === 'objectList') return stored.objectList;
  return stored[main];
}

/** Replaces an attribute whole (§5.6.19, PUT …/attrs/{attrId}); ResourceNotFound if it does not exist. */
export async function replaceAttribute(
  rt: TwinRuntime,
  tc: TwinCall,
  id: string,
  attrName: string,
  body: unknown,
): Promise<void> {
  const at = new Date();
  const iri = tc.terms.expand(attrName);
  if (isPlainObject(body)) delete body['@context'];
  const instances = parseAttribute(attrName, body, tc.terms, at.toISOString());
  await audit(rt, tc, { action: 'twin.entity.update', resourceType: 'ngsi-ld-entity', resourceId: id }, () =>
    modify(rt, tc, id, at, (old) => {
      if (!old.attrs[iri])
        throw new NgsiError('ResourceNotFound', `Entity ${clip(id)} has no attribute ${clip(attrName)}`);
      return attributeWrite(old, { ...old.attrs, [iri]: instances }, attrName);
    }),
  );
}

/**
 * Deletes an attribute (§5.6.5): its default instance, the instance of `datasetId`, or all
 * instances with `deleteAll`; ResourceNotFound when there is nothing to delete.
 */
export async function deleteAttribute(
  rt: TwinRuntime,
  tc: TwinCall,
  id: string,
  attrName: string,
  options: { datasetId?: string | undefined; deleteAll: boolean },
): Promise<void> {
  const iri = tc.terms.expand(attrName);
  await audit(rt, tc, { action: 'twin.entity.update', resourceType: 'ngsi-ld-entity', resourceId: id }, () =>
    modify(rt, tc, id, new Date(), (old) => {
      const list = old.attrs[iri];
      const keep = options.deleteAll ? [] : (list ?? []).filter((i) => i.datasetId !== options.datasetId);
      if (!list || keep.length === list.length)
        throw new NgsiError(
          'ResourceNotFound',
          `Entity ${clip(id)} has no attribute ${clip(attrName)}${options.datasetId === undefined ? '' : ` with datasetId ${clip(options.datasetId)}`}`,
        );
      const attrs = Object.fromEntries(Object.entries(old.attrs).filter(([k]) => k !== iri));
      if (keep.length > 0) attrs[iri] = keep;
      return attributeWrite(old, attrs, attrName);
    }),
  );
}

// --- Batch operations (§5.6.7–5.6.10, §5.6.20) ---------------------------------------------------

export type BatchKind = 'create' | 'upsert' | 'update' | 'delete' | 'merge';

const problemOf = (e: NgsiError) => ({
  type: `${NGSI_ERROR_BASE}${e.type}`,
  title: e.type,
  status: e.status,
  detail: e.detail,
});

/** An error about one batch member: only NGSI-LD refusals are per entity; anything else fails the batch. */
function memberError(e: unknown): NgsiError {
  if (e instanceof NgsiError) return e;
  const status = (e as { status?: unknown }).status;
  if (status === 404) return new NgsiError('ResourceNotFound', (e as Error).message);
  if (status === 403) return new NgsiError('Forbidden', (e as Error).message);
  if (status === 401) return new NgsiError('Unauthorized', (e as Error).message);
  throw e;
}

/**
 * Runs a batch. Each member is validated and written on its own, as the single-entity operation
 * would write it (one statement with its audit record and outbox event); a member's refusal is
 * reported in `errors`, leaves nothing of it behind and the others in place. NGSI-LD reports batch
 * results per entity, so a batch is not one transaction: members written before a crash stay.
 */
export async function batchOperation(
  rt: TwinRuntime,
  tc: TwinCall,
  kind: BatchKind,
  body: unknown,
  options: { upsertMode: 'replace' | 'update'; noOverwrite: boolean; memberTerms?: Terms[] },
): Promise<BatchResult> {
  if (!Array.isArray(body)) throw new NgsiError('BadRequestData', 'A batch operation takes a JSON array');
  if (body.length === 0) throw new NgsiError('BadRequestData', 'The batch is empty');
  if (body.length > rt.maxBatch)
    throw new NgsiError(
      'BadRequestData',
      `A batch holds at most ${rt.maxBatch} entities (got ${body.length})`,
    );
  const at = new Date();
  const now = at.toISOString();
  const result: BatchResult = { success: [], errors: [], created: [] };
  const fail = (entityId: string, e: unknown) =>
    result.errors.push({ entityId, error: problemOf(memberError(e)) });

  // Parse everything first: most refusals cost no database work.
  type Member = {
    id: string;
    input?: EntityInput;
    patch?: Attrs;
    types?: string[];
    scopes?: string[] | undefined;
  };
  const members: Member[] = [];
  const seen = new Set<string>();
  for (const [i, raw] of (body as unknown[]).entries()) {
    const rawId = kind === 'delete' ? raw : isPlainObject(raw) ? (raw['id'] ?? raw['@id']) : undefined;
    const entityId = typeof rawId === 'string' ? rawId : `[${i}]`;
    const terms = options.memberTerms?.[i] ?? tc.terms;
    try {
      if (kind === 'delete') {
        if (typeof raw !== 'string')
          throw new NgsiError('BadRequestData', `[${i}]: a batch delete lists entity ids`);
        members.push({ id: checkEntityId(raw, `[${i}]`) });
      } else if (kind === 'create' || (kind === 'upsert' && options.upsertMode === 'replace')) {
        const input = parseEntity(raw, terms, { now });
        members.push({ id: input.id, input });
      } else {
        const input = parseEntity(raw, terms, { now, requireType: kind !== 'upsert' ? false : true });
        const patch = parseAttributes(raw as Record<string, unknown>, terms, {
          now,
          allowNull: kind === 'merge',
        });
        members.push({ id: input.id, input, patch, types: input.types, scopes: input.scopes });
      }
      const last = members[members.length - 1] as Member;
      if (seen.has(last.id)) {
        members.pop();
        throw new NgsiError('BadRequestData', `Entity ${clip(last.id)} appears more than once in the batch`);
      }
      seen.add(last.id);
    } catch (e) {
      fail(entityId, e);
    }
  }
  if (members.length === 0) return result;

  if (kind !== 'create' && kind !== 'upsert') await requireTenant(rt.database.db, tc.tenant);
  for (const m of members) {
    try {
      await applyMember(rt, tc, kind, m, at, options, result);
      result.success.push(m.id);
    } catch (e) {
      fail(m.id, e);
    }
  }
  return result;
}

/** One member of a batch, written like the single-entity operation it corresponds to. */
async function applyMember(
  rt: TwinRuntime,
  tc: TwinCall,
  kind: BatchKind,
  m: { id: string; input?: EntityInput; patch?: Attrs; types?: string[]; scopes?: string[] | undefined },
  at: Date,
  options: { upsertMode: 'replace' | 'update'; noOverwrite: boolean },
  result: BatchResult,
): Promise<void> {
  if (kind === 'delete') {
    await modify(rt, tc, m.id, at, () => ({ write: 'delete', result: undefined }));
    return;
  }
  const input = m.input as EntityInput;
  if (kind === 'create' || kind === 'upsert') {
    if (await insertNew(rt, tc, input, at)) {
      result.created.push(m.id);
      return;
    }
    if (kind === 'create') throw new NgsiError('AlreadyExists', `Entity ${clip(m.id)} exists already`);
  }
  const now = at.toISOString();
  const attributes = compactNames(tc, Object.keys(input.attrs));
  await modify(rt, tc, m.id, at, (old) => {
    if (kind === 'upsert' && options.upsertMode === 'replace') return replacePlan(tc, input);
    if (kind === 'merge')
      return mergePlan(
        old,
        { types: m.types ?? [], scopes: m.scopes, patch: m.patch ?? {} },
        now,
        attributes,
      );
    // update, and upsert with options=update: append semantics (overwrite unless noOverwrite).
    const attrs: Attrs = { ...old.attrs };
    for (const [iri, instances] of Object.entries(m.patch ?? {})) {
      const existing = attrs[iri];
      if (existing && options.noOverwrite) continue;
      attrs[iri] = putInstances(existing ?? [], instances);
    }
    return {
      write: 'update',
      next: { types: addTypes(old.types, m.types ?? []), scopes: m.scopes ?? old.scopes, attrs },
      change: { action: 'update', attributes },
      result: undefined,
    };
  });
}
