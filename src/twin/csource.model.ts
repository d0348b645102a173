/**
 * Context source registrations (上下文源注册) on the way in and out: ETSI GS CIM 009 v1.8 §5.2.9
 * CSourceRegistration with §5.2.10 RegistrationInfo, §5.2.8 EntityInfo, §5.2.11 TimeInterval and
 * §5.2.34 RegistrationManagementInfo. A registration body as a client sends it becomes the stored,
 * normalized form — entity types and attribute names expanded to IRIs with the request's
 * @context, geometries checked and stripped of foreign members, defaults filled in — and anything
 * malformed is refused with BadRequestData naming the member path. Pure functions: the service
 * decides what a parsed registration does to the stored ones.
 */
import { randomUUID } from 'node:crypto';
import {
  checkAttributeName,
  checkEntityId,
  clip,
  isDateTime,
  isPlainObject,
  isUri,
  parseScopes,
  parseTypes,
  show,
  type Terms,
} from './entity.model.ts';
import { NgsiError } from './errors.ts';
import { checkGeometry, type Geometry } from './geo.ts';

export const REGISTRATION_TYPE = 'ContextSourceRegistration';

/** §4.3.6 modes of distributed operation; `inclusive` when none is given. */
export const MODES = ['inclusive', 'exclusive', 'redirect', 'auxiliary'] as const;
export type Mode = (typeof MODES)[number];

/**
 * Table 4.20-1, the operations a context source may offer. The list is the v1.9.1 one, a superset
 * of v1.8's, so registrations written for newer brokers are not refused for naming e.g. purgeEntity.
 */
export const OPERATIONS = [
  'createEntity',
  'updateEntity',
  'appendAttrs',
  'updateAttrs',
  'deleteAttrs',
  'deleteEntity',
  'createBatch',
  'upsertBatch',
  'updateBatch',
  'deleteBatch',
  'upsertTemporal',
  'appendAttrsTemporal',
  'deleteAttrsTemporal',
  'updateAttrInstanceTemporal',
  'deleteAttrInstanceTemporal',
  'deleteTemporal',
  'mergeEntity',
  'replaceEntity',
  'replaceAttrs',
  'mergeBatch',
  'purgeEntity',
  'retrieveEntity',
  'queryEntity',
  'queryBatch',
  'retrieveTemporal',
  'queryTemporal',
  'retrieveEntityTypes',
  'retrieveEntityTypeDetails',
  'retrieveEntityTypeInfo',
  'retrieveAttrTypes',
  'retrieveAttrTypeDetails',
  'retrieveAttrTypeInfo',
  'createSubscription',
  'updateSubscription',
  'retrieveSubscription',
  'querySubscription',
  'deleteSubscription',
  'retrieveEntityMap',
  'updateEntityMap',
  'deleteEntityMap',
  'createEntityMapQueryEntity',
  'createEntityMapQueryTemporal',
  'retrieveContextSourceIdentity',
] as const;

/** The consumption and subscription operations federationOps and associationOps share. */
const CONSUMPTION = [
  'retrieveEntity',
  'queryEntity',
  'queryBatch',
  'retrieveEntityTypes',
  'retrieveEntityTypeDetails',
  'retrieveEntityTypeInfo',
  'retrieveAttrTypes',
  'retrieveAttrTypeDetails',
  'retrieveAttrTypeInfo',
  'createSubscription',
  'updateSubscription',
  'retrieveSubscription',
  'querySubscription',
  'deleteSubscription',
];
const ENTITY_MAP = ['retrieveEntityMap', 'updateEntityMap', 'deleteEntityMap', 'createEntityMapQueryEntity'];

/** Table 4.20-2, the named operation groups and the operations each stands for. */
export const OPERATION_GROUPS: Readonly<Record<string, readonly string[]>> = {
  federationOps: [...CONSUMPTION, ...ENTITY_MAP, 'retrieveContextSourceIdentity'],
  associationOps: [...CONSUMPTION, 'retrieveContextSourceIdentity'],
  updateOps: ['updateEntity', 'updateAttrs', 'replaceEntity', 'replaceAttrs'],
  retrieveOps: ['retrieveEntity', 'queryEntity'],
  redirectionOps: [
    'createEntity',
    'updateEntity',
    'appendAttrs',
    'updateAttrs',
    'deleteAttrs',
    'deleteEntity',
    'mergeEntity',
    'replaceEntity',
    'replaceAttrs',
    'retrieveEntity',
    'queryEntity',
    'purgeEntity',
    'retrieveEntityTypes',
    'retrieveEntityTypeDetails',
    'retrieveEntityTypeInfo',
    'retrieveAttrTypes',
    'retrieveAttrTypeDetails',
    'retrieveAttrTypeInfo',
    ...ENTITY_MAP,
    'retrieveContextSourceIdentity',
  ],
};

const KNOWN_OPERATIONS: ReadonlySet<string> = new Set<string>([
  ...OPERATIONS,
  ...Object.keys(OPERATION_GROUPS),
]);

/** One entity (or pattern of entities) a context source may provide; types are expanded IRIs. */
export interface EntityInfo {
  id?: string;
  idPattern?: string;
  type: string[];
}

/** What a context source may provide: entities and/or attribute names (expanded IRIs). */
export interface RegistrationInfo {
  entities?: EntityInfo[];
  propertyNames?: string[];
  relationshipNames?: string[];
}

export interface TimeInterval {
  startAt: string;
  endAt?: string;
}

export interface KeyValuePair {
  key: string;
  value: string;
}

export interface RegistrationManagement {
  localOnly?: boolean;
  cacheDuration?: string;
  timeout?: number;
  cooldown?: number;
}

/** A registration in its stored, normalized form (the members of Table 5.2.9-1). */
export interface Registration {
  id: string;
  type: typeof REGISTRATION_TYPE;
  registrationName?: string;
  description?: string;
  information: RegistrationInfo[];
  tenant?: string;
  observationInterval?: TimeInterval;
  managementInterval?: TimeInterval;
  location?: Geometry;
  observationSpace?: Geometry;
  operationSpace?: Geometry;
  expiresAt?: string;
  endpoint: string;
  contextSourceInfo?: KeyValuePair[];
  scope?: string[];
  mode: Mode;
  operations?: string[];
  refreshRate?: string;
  management?: RegistrationManagement;
  contextSourceAlias?: string;
  datasetId?: string[];
}

/** The members a client sets (all but id and type). */
export type EditableMember = Exclude<keyof Registration, 'id' | 'type'>;

/** In the order the API representation lists them. */
const EDITABLE: readonly EditableMember[] = [
  'registrationName',
  'description',
  'information',
  'tenant',
  'observationInterval',
  'managementInterval',
  'location',
  'observationSpace',
  'operationSpace',
  'expiresAt',
  'endpoint',
  'contextSourceInfo',
  'scope',
  'mode',
  'operations',
  'refreshRate',
  'management',
  'contextSourceAlias',
  'datasetId',
];
const EDITABLE_SET: ReadonlySet<string> = new Set(EDITABLE);
const REQUIRED: ReadonlySet<EditableMember> = new Set<EditableMember>(['information', 'endpoint']);

/**
 * Table 5.2.9-2 and the system timestamps: read-only members the broker generates. The spec says a
 * create or update that carries them shall ignore them, so a retrieved registration can be sent back.
 */
const READ_ONLY: ReadonlySet<string> = new Set([
  '@context',
  'createdAt',
  'modifiedAt',
  'deletedAt',
  'status',
  'timesSent',
  'timesFailed',
  'lastSuccess',
  'lastFailure',
]);

const MAX_INFORMATION = 100;
const MAX_ENTITIES = 100;
const MAX_NAMES = 1000;
const MAX_LIST = 100;
const MAX_TEXT = 4096;
const MAX_PATTERN = 256;
// ISO 8601 durations (refreshRate, cacheDuration): at least one component, a time part after T.
const DURATION = /^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$/;
// Text members: no control characters (they end up in logs, headers of forwarded requests, UIs).
const CONTROL = /\p{Cc}/u;

const bad = (detail: string): NgsiError => new NgsiError('BadRequestData', detail);

/** A fresh registration id, as §5.9.2 lets the broker assign one. */
export function newRegistrationId(): string {
  return `urn:ngsi-ld:ContextSourceRegistration:${randomUUID()}`;
}

function text(raw: unknown, where: string, max = MAX_TEXT): string {
  if (typeof raw !== 'string' || raw === '') throw bad(`${where}: a non-empty string`);
  if (raw.length > max) throw bad(`${where}: at most ${max} characters`);
  if (CONTROL.test(raw)) throw bad(`${where}: control characters are not allowed`);
  return raw;
}

function list(raw: unknown, where: string, max = MAX_LIST): unknown[] {
  if (!Array.isArray(raw) || raw.length === 0) throw bad(`${where}: a non-empty array`);
  if (raw.length > max) throw bad(`${where}: at most ${max} items`);
  return raw;
}

function onlyMembers(
  obj: Record<string, unknown>,
  allowed: readonly string[],
  where: string,
  what: string,
): void {
  for (const k of Object.keys(obj))
    if (!allowed.includes(k)) throw bad(`${where}.${clip(k)}: not a member of ${what}`);
}

/** Checks an idPattern: bounded, and a regular expression JavaScript compiles (as entity queries do). */
export function checkIdPattern(raw: unknown, where: string): string {
  if (typeof raw !== 'string' || raw === '') throw bad(`${where}: a non-empty regular expression`);
  if (raw.length > MAX_PATTERN) throw bad(`${where}: at most ${MAX_PATTERN} characters`);
  try {
    new RegExp(raw, 'u');
  } catch {
    throw bad(`${where}: "${clip(raw)}" is not a regular expression`);
  }
  return raw;
}

function parseEntityInfo(raw: unknown, terms: Terms, where: string): EntityInfo {
  if (!isPlainObject(raw)) throw bad(`${where}: an object {id or idPattern, type}`);
  onlyMembers(raw, ['id', 'idPattern', 'type'], where, 'an EntityInfo');
  if (raw['type'] === undefined) throw bad(`${where}.type: an entity type is required`);
  const info: EntityInfo = { type: parseTypes(raw['type'], terms, `${where}.type`) };
  if (raw['id'] !== undefined && raw['idPattern'] !== undefined)
    throw bad(`${where}: id and idPattern exclude each other`);
  if (raw['id'] !== undefined) info.id = checkEntityId(raw['id'], `${where}.id`);
  if (raw['idPattern'] !== undefined) info.idPattern = checkIdPattern(raw['idPattern'], `${where}.idPattern`);
  return info;
}

function parseNames(raw: unknown, terms: Terms, where: string): string[] {
  const out: string[] = [];
  for (const [i, n] of list(raw, where, MAX_NAMES).entries()) {
    if (typeof n !== 'string') throw bad(`${where}[${i}]: an attribute name`);
    const iri = terms.expand(checkAttributeName(n, `${where}[${i}]`));
    if (!out.includes(iri)) out.push(iri);
  }
  return out;
}

function parseInformation(raw: unknown, terms: Terms): RegistrationInfo[] {
  return list(raw, 'information', MAX_INFORMATION).map((entry, i) => {
    const where = `information[${i}]`;
    if (!isPlainObject(entry)) throw bad(`${where}: an object {entities, propertyNames, relationshipNames}`);
    onlyMembers(entry, ['entities', 'propertyNames', 'relationshipNames'], where, 'a RegistrationInfo');
    const info: RegistrationInfo = {};
    if (entry['entities'] !== undefined)
      info.entities = list(entry['entities'], `${where}.entities`, MAX_ENTITIES).map((e, j) =>
        parseEntityInfo(e, terms, `${where}.entities[${j}]`),
      );
    if (entry['propertyNames'] !== undefined)
      info.propertyNames = parseNames(entry['propertyNames'], terms, `${where}.propertyNames`);
    if (entry['relationshipNames'] !== undefined)
      info.relationshipNames = parseNames(entry['relationshipNames'], terms, `${where}.relationshipNames`);
    if (!info.entities && !info.propertyNames && !info.relationshipNames)
      throw bad(`${where}: needs at least one of entities, propertyNames, relationshipNames`);
    return info;
  });
}

function parseInterval(raw: unknown, where: string): TimeInterval {
  if (!isPlainObject(raw)) throw bad(`${where}: an object {startAt, endAt}`);
  onlyMembers(raw, ['startAt', 'endAt'], where, 'a TimeInterval');
  const { startAt, endAt } = raw;
  if (!isDateTime(startAt)) throw bad(`${where}.startAt: an ISO 8601 date-time is required`);
  const out: TimeInterval = { startAt };
  if (endAt !== undefined) {
    if (!isDateTime(endAt)) throw bad(`${where}.endAt: "${clip(show(endAt))}" is not an ISO 8601 date-time`);
    if (Date.parse(endAt) < Date.parse(startAt)) throw bad(`${where}: endAt is before startAt`);
    out.endAt = endAt;
  }
  return out;
}

function parseEndpoint(raw: unknown): string {
  if (!isUri(raw)) throw bad(`endpoint: "${clip(show(raw))}" is not an absolute URI`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw bad(`endpoint: "${clip(raw)}" is not an absolute URI`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '')
    throw bad(`endpoint: "${clip(raw)}" is not an http or https URI`);
  return raw;
}

function parseExpiresAt(raw: unknown, now: Date): string {
  if (!isDateTime(raw)) throw bad(`expiresAt: "${clip(show(raw))}" is not an ISO 8601 date-time`);
  if (Date.parse(raw) <= now.getTime()) throw bad(`expiresAt: ${raw} is not in the future`);
  return raw;
}

function parseContextSourceInfo(raw: unknown): KeyValuePair[] {
  return list(raw, 'contextSourceInfo').map((kv, i) => {
    const where = `contextSourceInfo[${i}]`;
    if (!isPlainObject(kv)) throw bad(`${where}: an object {key, value}`);
    onlyMembers(kv, ['key', 'value'], where, 'a KeyValuePair');
    const key = text(kv['key'], `${where}.key`, 256);
    if (typeof kv['value'] !== 'string') throw bad(`${where}.value: a string`);
    if (kv['value'].length > MAX_TEXT) throw bad(`${where}.value: at most ${MAX_TEXT} characters`);
    return { key, value: kv['value'] };
  });
}

function parseOperations(raw: unknown): string[] {
  const out: string[] = [];
  for (const [i, op] of list(raw, 'operations').entries()) {
    if (typeof op !== 'string' || !KNOWN_OPERATIONS.has(op))
      throw bad(
        `operations[${i}]: "${clip(show(op))}" is not an operation or operation group of §4.20 (e.g. federationOps, retrieveOps, queryEntity)`,
      );
    if (!out.includes(op)) out.push(op);
  }
  return out;
}

function parseDuration(raw: unknown, where: string): string {
  if (typeof raw !== 'string' || raw.length > 64 || !DURATION.test(raw))
    throw bad(`${where}: "${clip(show(raw))}" is not an ISO 8601 duration (e.g. PT10M)`);
  return raw;
}

function parseManagement(raw: unknown): RegistrationManagement {
  if (!isPlainObject(raw)) throw bad('management: an object {localOnly, cacheDuration, timeout, cooldown}');
  onlyMembers(
    raw,
    ['localOnly', 'cacheDuration', 'timeout', 'cooldown'],
    'management',
    'a RegistrationManagementInfo',
  );
  const out: RegistrationManagement = {};
  if (raw['localOnly'] !== undefined) {
    if (typeof raw['localOnly'] !== 'boolean') throw bad('management.localOnly: true or false');
    out.localOnly = raw['localOnly'];
  }
  if (raw['cacheDuration'] !== undefined)
    out.cacheDuration = parseDuration(raw['cacheDuration'], 'management.cacheDuration');
  for (const k of ['timeout', 'cooldown'] as const) {
    const v = raw[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
      throw bad(`management.${k}: a positive number of milliseconds`);
    out[k] = v;
  }
  return out;
}

function parseDatasetIds(raw: unknown): string[] {
  const out: string[] = [];
  for (const [i, d] of list(raw, 'datasetId').entries()) {
    if (d !== '@none' && !isUri(d)) throw bad(`datasetId[${i}]: "${clip(show(d))}" is not a URI or @none`);
    if (!out.includes(d)) out.push(d);
  }
  return out;
}

/** Parses one member's value (never null: removal is the caller's business). */
function parseMember(
  reg: Partial<Registration>,
  name: EditableMember,
  raw: unknown,
  terms: Terms,
  now: Date,
): void {
  switch (name) {
    case 'registrationName':
    case 'description':
    case 'tenant':
    case 'contextSourceAlias':
      reg[name] = text(raw, name);
      return;
    case 'information':
      reg.information = parseInformation(raw, terms);
      return;
    case 'observationInterval':
    case 'managementInterval':
      reg[name] = parseInterval(raw, name);
      return;
    case 'location':
    case 'observationSpace':
    case 'operationSpace':
      reg[name] = checkGeometry(raw, name);
      return;
    case 'expiresAt':
      reg.expiresAt = parseExpiresAt(raw, now);
      return;
    case 'endpoint':
      reg.endpoint = parseEndpoint(raw);
      return;
    case 'contextSourceInfo':
      reg.contextSourceInfo = parseContextSourceInfo(raw);
      return;
    case 'scope':
      reg.scope = parseScopes(raw, 'scope');
      return;
    case 'mode':
      if (typeof raw !== 'string' || !(MODES as readonly string[]).includes(raw))
        throw bad(`mode: "${clip(show(raw))}" is not one of ${MODES.join(', ')}`);
      reg.mode = raw as Mode;
      return;
    case 'operations':
      reg.operations = parseOperations(raw);
      return;
    case 'refreshRate':
      reg.refreshRate = parseDuration(raw, 'refreshRate');
      return;
    case 'management':
      reg.management = parseManagement(raw);
      return;
    case 'datasetId':
      reg.datasetId = parseDatasetIds(raw);
      return;
  }
}

/** Checks `type`: the reserved type, as a term or its IRI. */
function checkType(raw: unknown, terms: Terms): void {
  if (raw === undefined) throw bad(`type: required, "${REGISTRATION_TYPE}"`);
  if (typeof raw !== 'string' || terms.expand(raw) !== terms.expand(REGISTRATION_TYPE))
    throw bad(`type: "${clip(show(raw))}" is not "${REGISTRATION_TYPE}"`);
}

/** The members of a body other than id and type, parsed; null marks a member to remove (PATCH). */
function parseMembers(
  body: Record<string, unknown>,
  terms: Terms,
  options: { now: Date; allowNull: boolean },
): { set: Partial<Registration>; removed: EditableMember[] } {
  const set: Partial<Registration> = {};
  const removed: EditableMember[] = [];
  for (const [name, raw] of Object.entries(body)) {
    // undefined only reaches here from code (JSON has none): the member is absent.
    if (raw === undefined || name === 'id' || name === 'type' || READ_ONLY.has(name)) continue;
    if (!EDITABLE_SET.has(name)) throw bad(`${clip(name)}: not a member of a ContextSourceRegistration`);
    const member = name as EditableMember;
    if (raw === null) {
      if (!options.allowNull) throw bad(`${member}: null is not a value`);
      if (REQUIRED.has(member)) throw bad(`${member}: required, it cannot be removed`);
      removed.push(member);
      continue;
    }
    parseMember(set, member, raw, terms, options.now);
  }
  return { set, removed };
}

/**
 * Rules across members. §5.9.2: an exclusive registration names the entities by id (not by
 * idPattern) and the attributes it holds, so overlaps with other registrations can be decided.
 */
export function checkRegistration(reg: Registration): Registration {
  if (reg.mode === 'exclusive')
    for (const [i, info] of reg.information.entries()) {
      const where = `information[${i}]`;
      if (!info.entities || info.entities.some((e) => e.id === undefined))
        throw bad(`${where}: an exclusive registration names every entity by id (not idPattern)`);
      if (!info.propertyNames && !info.relationshipNames)
        throw bad(`${where}: an exclusive registration names its propertyNames or relationshipNames`);
    }
  return reg;
}

/** Parses a registration to create (§5.9.2): BadRequestData naming the member path otherwise. */
export function parseRegistration(body: unknown, terms: Terms, options: { now: Date }): Registration {
  if (!isPlainObject(body)) throw bad('The registration must be a JSON object');
  checkType(body['type'], terms);
  const id = body['id'] === undefined ? newRegistrationId() : checkEntityId(body['id'], 'id');
  const { set } = parseMembers(body, terms, { now: options.now, allowNull: false });
  if (set.information === undefined)
    throw bad('information: required, a non-empty array of RegistrationInfo');
  if (set.endpoint === undefined)
    throw bad('endpoint: required, the http or https URI of the context source');
  // Built member by member so the stored document lists them in the API's order.
  const reg: Record<string, unknown> = { id, type: REGISTRATION_TYPE };
  for (const m of EDITABLE) if (set[m] !== undefined) reg[m] = set[m];
  reg['mode'] = set.mode ?? 'inclusive';
  return checkRegistration(reg as unknown as Registration);
}

/** A parsed PATCH fragment: members to replace and members to remove. */
export interface RegistrationPatch {
  set: Partial<Registration>;
  removed: EditableMember[];
}

/** Parses an update fragment (§5.9.3): the same checks per member; id and type cannot change. */
export function parseRegistrationPatch(
  body: unknown,
  terms: Terms,
  options: { now: Date; id: string },
): RegistrationPatch {
  if (!isPlainObject(body)) throw bad('The fragment must be a JSON object');
  if (body['id'] !== undefined && body['id'] !== options.id)
    throw bad('id: a registration id cannot be changed');
  if (body['type'] !== undefined) checkType(body['type'], terms);
  const patch = parseMembers(body, terms, { now: options.now, allowNull: true });
  if (Object.keys(patch.set).length === 0 && patch.removed.length === 0)
    throw bad('The fragment changes no member of the registration');
  return patch;
}

/** The registration with a patch merged in (member by member), checked across members again. */
export function applyRegistrationPatch(old: Registration, patch: RegistrationPatch): Registration {
  const reg: Record<string, unknown> = { id: old.id, type: REGISTRATION_TYPE };
  for (const m of EDITABLE) {
    if (patch.removed.includes(m)) continue;
    const v = patch.set[m] ?? old[m];
    if (v !== undefined) reg[m] = v;
  }
  if (reg['mode'] === undefined) reg['mode'] = 'inclusive';
  return checkRegistration(reg as unknown as Registration);
}

/** Every entity type the registration names (expanded, without duplicates). */
export function registrationTypes(reg: Registration): string[] {
  const out = new Set<string>();
  for (const info of reg.information) for (const e of info.entities ?? []) for (const t of e.type) out.add(t);
  return [...out];
}

/** Every idPattern the registration carries (they are also checked against PostgreSQL's regex dialect). */
export function idPatternsOf(reg: Pick<Registration, 'information'>): string[] {
  return reg.information.flatMap((i) =>
    (i.entities ?? []).flatMap((e) => (e.idPattern ? [e.idPattern] : [])),
  );
}

/** The operations the registration offers, groups expanded; federationOps when it names none (§4.20). */
export function operationsOf(reg: Registration): Set<string> {
  const out = new Set<string>();
  for (const op of reg.operations ?? ['federationOps']) {
    const group = OPERATION_GROUPS[op];
    if (group) for (const o of group) out.add(o);
    else out.add(op);
  }
  return out;
}

export interface RenderRegistrationOptions {
  /** System timestamps, shown with `options=sysAttrs`. */
  createdAt: string;
  modifiedAt: string;
  sysAttrs: boolean;
  /** Whether `contextSourceInfo` (which may carry credentials for the source) is shown. */
  showSourceInfo: boolean;
}

/** The API representation (§5.2.9) with terms compacted by the caller's @context. */
export function renderRegistration(
  reg: Registration,
  terms: Terms,
  options: RenderRegistrationOptions,
): Record<string, unknown> {
  const compact = (iris: string[]) => iris.map((i) => terms.compact(i));
  const out: Record<string, unknown> = { id: reg.id, type: REGISTRATION_TYPE };
  for (const m of EDITABLE) {
    const v = reg[m];
    if (v === undefined) continue;
    if (m === 'contextSourceInfo' && !options.showSourceInfo) continue;
    if (m === 'information') {
      out[m] = reg.information.map((info) => {
        const o: Record<string, unknown> = {};
        if (info.entities)
          o['entities'] = info.entities.map((e) => {
            const types = compact(e.type);
            return {
              ...(e.id !== undefined ? { id: e.id } : {}),
              ...(e.idPattern !== undefined ? { idPattern: e.idPattern } : {}),
              type: types.length === 1 ? types[0] : types,
            };
          });
        if (info.propertyNames) o['propertyNames'] = compact(info.propertyNames);
        if (info.relationshipNames) o['relationshipNames'] = compact(info.relationshipNames);
        return o;
      });
    } else if (m === 'scope') {
      out[m] = reg.scope?.length === 1 ? reg.scope[0] : reg.scope;
    } else out[m] = v;
  }
  if (options.sysAttrs) {
    out['createdAt'] = options.createdAt;
    out['modifiedAt'] = options.modifiedAt;
  }
  return out;
}
