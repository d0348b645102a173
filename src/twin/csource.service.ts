/**
 * Context source registration and discovery (ETSI GS CIM 009 v1.8 §5.9, §5.10): register,
 * retrieve, query, update and delete registrations of other brokers and context sources, and
 * `registrationsFor`, the query planner a future federation step asks which registered sources may
 * answer an entity query. Writes need twin administration and are audited and announced on the bus
 * in the statement that makes them; writes of one tenant are serialized, so the §5.9.2 rule that
 * an exclusive registration overlaps no other holds under concurrency too.
 */
import { outboxRider, type Rider } from '../kernel/index.ts';
import { auditRider, can, recordRefusal, type CallContext } from '../trust/index.ts';
import { ADMIN, authorizeManage, readScope } from './access.ts';
import {
  applyRegistrationPatch,
  checkIdPattern,
  idPatternsOf,
  operationsOf,
  parseRegistration,
  parseRegistrationPatch,
  registrationTypes,
  renderRegistration,
  type Mode,
  type Registration,
} from './csource.model.ts';
import {
  countRegistrations,
  deleteRegistration,
  findOverlapping,
  findRegistration,
  firstInvalidPattern,
  geometrySql,
  GEO_MEMBERS,
  insertRegistration,
  lockTenantRegistrations,
  matchSql,
  queryRegistrations,
  updateRegistration,
  type GeoMember,
  type RegistrationFilter,
  type StoredRegistration,
} from './csource.store.ts';
import { clip, isPlainObject, isUri, parseTypes, type Terms } from './entity.model.ts';
import { DEFAULT_LIMIT, MAX_LIMIT, param, parseOptions } from './entity.query.ts';
import { requireTenant, type TwinCall, type TwinRuntime } from './entity.service.ts';
import { tenantRider } from './entity.store.ts';
import { NgsiError } from './errors.ts';
import { geoQueryToSql, parseGeoQuery, type GeoQuery } from './geo.ts';
import { parseAttrList } from './query.lang.ts';

export const RESOURCE_TYPE = 'ngsi-ld-csource-registration';
/** The most registrations `registrationsFor` answers (ordered by id). */
export const MAX_PLANNED = 10_000;
const MAX_IDS = 100;

type Db = TwinRuntime['database']['db'];

const notFound = (id: string): NgsiError =>
  new NgsiError('ResourceNotFound', `No context source registration ${clip(id)}`);

// --- Authorization -------------------------------------------------------------------------------

/** Throws unless the caller may write registrations (access.ts). */
const authorizeWrite = (rt: TwinRuntime, call: CallContext): void => authorizeManage(rt.access, call);

/**
 * Throws unless the caller may read registrations: entity reads' rule (readScope), so in secured
 * access anonymous callers are refused; registrations lie in no area, so any signed-in caller reads.
 */
function authorizeRead(rt: TwinRuntime, call: CallContext): void {
  readScope(rt.access, call);
}

/** `contextSourceInfo` may carry the source's credentials: in secured access only administrators see it. */
const showsSourceInfo = (rt: TwinRuntime, call: CallContext): boolean =>
  rt.access === 'open' || can(call.actor, ADMIN, { areaPath: null });

/**
 * Runs a write, which authorizes first; a refusal of a known caller (403) is recorded in the audit
 * trail (for a create, under the id the body claims, if any).
 */
async function audited<T>(
  rt: TwinRuntime,
  tc: TwinCall,
  entry: { action: string; id: string | null },
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof NgsiError && e.type === 'Forbidden' && tc.call.actor.kind !== 'anonymous')
      await recordRefusal(rt.database, tc.call, {
        action: `twin.csource.${entry.action}`,
        resourceType: RESOURCE_TYPE,
        resourceId: entry.id,
        details: { tenant: tc.tenant, reason: e.detail },
      });
    throw e;
  }
}

// --- Writes --------------------------------------------------------------------------------------

const TOPIC = { create: 'created', update: 'updated', delete: 'deleted' } as const;

/** The change's audit record and outbox event, riding along with the statement that makes it. */
function changeRiders(tc: TwinCall, action: keyof typeof TOPIC, reg: Registration): Rider[] {
  const facts = {
    tenant: tc.tenant,
    id: reg.id,
    mode: reg.mode,
    types: registrationTypes(reg).slice(0, 100),
  };
  const riders = [
    auditRider(tc.call, [
      {
        action: `twin.csource.${action}`,
        resourceType: RESOURCE_TYPE,
        resourceId: reg.id,
        details: { tenant: facts.tenant, mode: facts.mode, types: facts.types },
      },
    ]),
    outboxRider([{ topic: `twin.csource.${TOPIC[action]}`, payload: facts }]),
  ];
  // NGSI-LD creates a tenant by its first write.
  return action === 'create' && tc.tenant !== '' ? [tenantRider(tc.tenant), ...riders] : riders;
}

/** Refuses idPatterns PostgreSQL cannot run (discovery matches them in SQL), before any write. */
async function checkPatterns(rt: TwinRuntime, patterns: string[]): Promise<void> {
  const invalid = await firstInvalidPattern(rt.database.db, patterns);
  if (invalid !== undefined)
    throw new NgsiError(
      'BadRequestData',
      `idPattern: "${clip(invalid)}" is not a regular expression PostgreSQL accepts`,
    );
}

/**
 * §5.9.2: an exclusive registration may not claim an entity attribute another registration
 * (inclusive, exclusive or redirect) claims, and no such registration may claim one an existing
 * exclusive registration holds. Auxiliary registrations never conflict.
 */
async function refuseOverlap(db: Db, tc: TwinCall, reg: Registration): Promise<void> {
  const against: Mode[] =
    reg.mode === 'exclusive'
      ? ['inclusive', 'exclusive', 'redirect']
      : reg.mode === 'auxiliary'
        ? []
        : ['exclusive'];
  if (against.length === 0) return;
  const other = await findOverlapping(db, {
    tenant: tc.tenant,
    excludeId: reg.id,
    modes: against,
    information: reg.information,
  });
  if (other !== undefined)
    throw new NgsiError(
      'Conflict',
      `The ${reg.mode} registration claims an entity attribute that registration ${clip(other)} claims (an exclusive registration overlaps no other, §5.9.2)`,
    );
}

/** Registers a context source (§5.9.2); AlreadyExists when the id is taken, Conflict on an exclusive overlap. */
export async function createRegistration(rt: TwinRuntime, tc: TwinCall, body: unknown): Promise<string> {
  const claimed = isPlainObject(body) && typeof body['id'] === 'string' ? clip(body['id'], 2048) : null;
  return audited(rt, tc, { action: 'create', id: claimed }, async () => {
    authorizeWrite(rt, tc.call);
    const at = new Date();
    const reg = parseRegistration(body, tc.terms, { now: at });
    await checkPatterns(rt, idPatternsOf(reg));
    await rt.database.transact(async (trx) => {
      await lockTenantRegistrations(trx, tc.tenant);
      await refuseOverlap(trx, tc, reg);
      const w = { tenant: tc.tenant, registration: reg, types: registrationTypes(reg), at };
      if (!(await insertRegistration(trx, w, changeRiders(tc, 'create', reg))))
        throw new NgsiError('AlreadyExists', `Context source registration ${clip(reg.id)} exists already`);
    });
    return reg.id;
  });
}

/** Updates a registration by merging the members given (§5.9.3); id and type cannot change. */
export async function patchRegistration(
  rt: TwinRuntime,
  tc: TwinCall,
  id: string,
  body: unknown,
): Promise<void> {
  await audited(rt, tc, { action: 'update', id }, async () => {
    authorizeWrite(rt, tc.call);
    const at = new Date();
    const patch = parseRegistrationPatch(body, tc.terms, { now: at, id });
    if (patch.set.information) await checkPatterns(rt, idPatternsOf({ information: patch.set.information }));
    await rt.database.transact(async (trx) => {
      await lockTenantRegistrations(trx, tc.tenant);
      const old = await findRegistration(trx, tc.tenant, id, { forUpdate: true });
      if (!old) {
        await requireTenant(trx, tc.tenant);
        throw notFound(id);
      }
      const next = applyRegistrationPatch(old.registration, patch);
      await refuseOverlap(trx, tc, next);
      const w = { tenant: tc.tenant, registration: next, types: registrationTypes(next), at };
      // The row is locked and the tenant's writes serialized: the version cannot have moved.
      if (!(await updateRegistration(trx, w, old.version, changeRiders(tc, 'update', next))))
        throw new Error(`registration ${id} changed while locked`);
    });
  });
}

/** Deletes a registration (§5.9.4). */
export async function removeRegistration(rt: TwinRuntime, tc: TwinCall, id: string): Promise<void> {
  await audited(rt, tc, { action: 'delete', id }, async () => {
    authorizeWrite(rt, tc.call);
    const old = await findRegistration(rt.database.db, tc.tenant, id);
    if (!old) {
      await requireTenant(rt.database.db, tc.tenant);
      throw notFound(id);
    }
    const riders = changeRiders(tc, 'delete', old.registration);
    if (!(await deleteRegistration(rt.database.db, { tenant: tc.tenant, id }, riders))) throw notFound(id);
  });
}

// --- Reads ---------------------------------------------------------------------------------------

/**
 * Retrieves a registration (§5.10.1); ResourceNotFound or NonexistentTenant otherwise. An expired
 * registration is still found here (so it can be renewed or deleted), not by queries.
 */
export async function retrieveRegistration(
  rt: TwinRuntime,
  tc: TwinCall,
  id: string,
): Promise<StoredRegistration> {
  authorizeRead(rt, tc.call);
  const found = await findRegistration(rt.database.db, tc.tenant, id);
  if (!found) {
    await requireTenant(rt.database.db, tc.tenant);
    throw notFound(id);
  }
  return found;
}

/** The API representation of a stored registration for this caller (§5.2.9). */
export function presentRegistration(
  rt: TwinRuntime,
  tc: TwinCall,
  stored: StoredRegistration,
  options: { sysAttrs: boolean },
): Record<string, unknown> {
  return renderRegistration(stored.registration, tc.terms, {
    createdAt: stored.createdAt,
    modifiedAt: stored.modifiedAt,
    sysAttrs: options.sysAttrs,
    showSourceInfo: showsSourceInfo(rt, tc.call),
  });
}

/** A parsed `GET /csourceRegistrations` (§5.10.2, §6.8.3.2). */
export interface RegistrationQuerySpec {
  filter: RegistrationFilter;
  geoQ: GeoQuery | undefined;
  limit: number;
  offset: number;
  count: boolean;
  sysAttrs: boolean;
}

function integer(query: Record<string, unknown>, name: string, fallback: number): number {
  const raw = param(query, name);
  if (raw === undefined) return fallback;
  if (!/^\d{1,9}$/.test(raw))
    throw new NgsiError('BadRequestData', `${name}: "${clip(raw)}" is not a non-negative integer`);
  return Number(raw);
}

/** Parses the query parameters; types and attribute names are expanded with the request's @context. */
export function parseRegistrationQuery(query: Record<string, unknown>, terms: Terms): RegistrationQuerySpec {
  for (const unsupported of ['q', 'csf'])
    if (query[unsupported] !== undefined)
      throw new NgsiError(
        'OperationNotSupported',
        `${unsupported}: registrations cannot be filtered by ${unsupported === 'q' ? 'a query over their properties' : 'a context source filter'} yet; use id, type, idPattern, attrs and the geo-query`,
      );
  const idRaw = param(query, 'id');
  let ids: string[] | undefined;
  if (idRaw !== undefined) {
    ids = idRaw.split(',').map((s) => s.trim());
    if (ids.length > MAX_IDS) throw new NgsiError('BadRequestData', `id: at most ${MAX_IDS} ids`);
    for (const id of ids)
      if (!isUri(id)) throw new NgsiError('BadRequestData', `id: "${clip(id)}" is not a URI`);
  }
  const typeRaw = param(query, 'type');
  const idPatternRaw = param(query, 'idPattern');
  const attrs = parseAttrList(param(query, 'attrs'));
  const limit = integer(query, 'limit', DEFAULT_LIMIT);
  if (limit > MAX_LIMIT)
    throw new NgsiError('TooManyResults', `limit ${limit} exceeds the maximum page size ${MAX_LIMIT}`);
  const countRaw = param(query, 'count');
  if (countRaw !== undefined && countRaw !== 'true' && countRaw !== 'false')
    throw new NgsiError('BadRequestData', 'count: true or false');
  const { sysAttrs, flags } = parseOptions(query);
  return {
    filter: {
      types:
        typeRaw === undefined
          ? undefined
          : parseTypes(
              typeRaw.split(',').map((t) => t.trim()),
              terms,
              'type',
            ),
      ids,
      idPattern: idPatternRaw === undefined ? undefined : checkIdPattern(idPatternRaw, 'idPattern'),
      attrs: attrs?.map((a) => terms.expand(a)),
    },
    geoQ: parseGeoQuery({
      georel: param(query, 'georel'),
      geometry: param(query, 'geometry'),
      coordinates: param(query, 'coordinates'),
      geoproperty: param(query, 'geoproperty'),
    }),
    limit,
    offset: integer(query, 'offset', 0),
    count: countRaw === 'true' || flags.has('count'),
    sysAttrs,
  };
}

/** The member a geo-query's `geoproperty` names: `location` (indexed) or one of the two spaces of §5.2.9. */
function geoMember(geoproperty: string, terms: Terms): GeoMember {
  const iri = terms.expand(geoproperty);
  const member = GEO_MEMBERS.find((m) => terms.expand(m) === iri);
  if (member === undefined)
    throw new NgsiError(
      'BadRequestData',
      `geoproperty: registrations are located by ${GEO_MEMBERS.join(', ')}, not "${clip(geoproperty)}"`,
    );
  return member;
}

/** Queries registrations (§5.10.2): one page of the live ones matching, and the total with `count`. */
export async function queryRegistrationPage(
  rt: TwinRuntime,
  tc: TwinCall,
  spec: RegistrationQuerySpec,
): Promise<{ registrations: StoredRegistration[]; count: number | undefined }> {
  authorizeRead(rt, tc.call);
  const db = rt.database.db;
  await requireTenant(db, tc.tenant);
  const where = [matchSql(spec.filter)];
  if (spec.geoQ)
    where.push(geoQueryToSql(spec.geoQ, geometrySql(geoMember(spec.geoQ.geoproperty, tc.terms))));
  const q = { tenant: tc.tenant, where, limit: spec.limit, offset: spec.offset };
  const [registrations, count] = await Promise.all([
    queryRegistrations(db, q),
    spec.count ? countRegistrations(db, q) : Promise.resolve(undefined),
  ]);
  return { registrations, count };
}

/** An entity query to plan: terms as the client sent them (expanded here), entity ids, an operation. */
export interface PlannedQuery {
  types?: string[] | undefined;
  ids?: string[] | undefined;
  attrs?: string[] | undefined;
  /** Only registrations offering this operation (§4.20, groups expanded; federationOps by default). */
  operation?: string | undefined;
}

/**
 * The live registrations of the caller's tenant that may provide entities of the query: a common
 * type, an id named or matched by idPattern (or none named), attribute names intersecting (or none
 * registered). For the federation step: the caller's operation has been authorized already, so
 * this authorizes nothing. At most MAX_PLANNED, in id order.
 */
export async function registrationsFor(
  rt: TwinRuntime,
  tc: TwinCall,
  query: PlannedQuery,
): Promise<Registration[]> {
  const expand = (names: string[] | undefined) => names?.map((n) => tc.terms.expand(n));
  const found = await queryRegistrations(rt.database.db, {
    tenant: tc.tenant,
    where: [matchSql({ types: expand(query.types), ids: query.ids, attrs: expand(query.attrs) })],
    limit: MAX_PLANNED,
    offset: 0,
  });
  const registrations = found.map((s) => s.registration);
  const { operation } = query;
  return operation === undefined
    ? registrations
    : registrations.filter((r) => operationsOf(r).has(operation));
}
