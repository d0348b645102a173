/**
 * The NGSI-LD information model on the way in (ETSI GS CIM 009 v1.8 §4.5, §5.2): turns an entity or
 * attribute fragment as a client sends it (normalized or concise, compacted terms) into the stored
 * form — attribute names and types expanded to IRIs, every attribute an array of instances — and
 * refuses anything malformed with BadRequestData naming the offending member. Nothing here touches
 * the database; the service decides what the parsed fragment does to a stored entity.
 */
import { checkGeometry, SIMPLE_GEOMETRY_TYPES } from './geo.ts';
import { NgsiError } from './errors.ts';

/** What the model needs of a JSON-LD context: term expansion and compaction (memoised by the caller). */
export interface Terms {
  expand(term: string): string;
  compact(iri: string): string;
}

export const ATTRIBUTE_TYPES = [
  'Property',
  'Relationship',
  'GeoProperty',
  'LanguageProperty',
  'VocabProperty',
  'ListProperty',
  'ListRelationship',
  'JsonProperty',
] as const;
export type AttributeType = (typeof ATTRIBUTE_TYPES)[number];
const ATTRIBUTE_TYPE_SET: ReadonlySet<string> = new Set(ATTRIBUTE_TYPES);

/** One stored attribute instance (twin-spec storage format); sub-attributes under their IRIs. */
export interface Instance {
  type: AttributeType;
  value?: unknown;
  object?: string | string[];
  objectType?: string | string[];
  languageMap?: Record<string, string>;
  vocab?: string | string[];
  valueList?: unknown[];
  objectList?: unknown[];
  json?: unknown;
  datasetId?: string;
  observedAt?: string;
  unitCode?: string;
  createdAt?: string;
  modifiedAt?: string;
  [subAttribute: string]: unknown;
}

/** Attributes keyed by expanded IRI; every attribute an array of instances (default instance first). */
export type Attrs = Record<string, Instance[]>;

export interface EntityInput {
  id: string;
  types: string[];
  scopes: string[] | undefined;
  attrs: Attrs;
}

/** The members that carry an instance's value, one per attribute type (plus a relationship's objectType). */
export const VALUE_MEMBERS = [
  'value',
  'object',
  'objectType',
  'languageMap',
  'vocab',
  'valueList',
  'objectList',
  'json',
] as const;

/** The member each attribute type carries its value in. */
export const MAIN_MEMBER: Readonly<Record<string, string>> = {
  Property: 'value',
  GeoProperty: 'value',
  Relationship: 'object',
  LanguageProperty: 'languageMap',
  VocabProperty: 'vocab',
  ListProperty: 'valueList',
  ListRelationship: 'objectList',
  JsonProperty: 'json',
};

/** The members of an attribute instance that are not sub-attributes. */
export const INSTANCE_MEMBERS: ReadonlySet<string> = new Set([
  'type',
  ...VALUE_MEMBERS,
  'datasetId',
  'observedAt',
  'unitCode',
  'createdAt',
  'modifiedAt',
  'deletedAt',
  'instanceId',
  'lang',
  '@context',
]);

/** Entity members that are not attributes. */
export const ENTITY_MEMBERS: ReadonlySet<string> = new Set([
  'id',
  '@id',
  'type',
  '@type',
  'scope',
  '@context',
  'createdAt',
  'modifiedAt',
  'deletedAt',
]);

/**
 * Names no attribute may have: the entity's own members and the core members of an attribute
 * (an attribute called `value` or `object` could not be told apart from its own value), plus
 * JavaScript prototype keys.
 */
const RESERVED_NAMES: ReadonlySet<string> = new Set([
  ...ENTITY_MEMBERS,
  ...INSTANCE_MEMBERS,
  '@value',
  '@language',
  '@graph',
  '__proto__',
  'constructor',
  'prototype',
]);

/** The null value of a merge (PATCH) that deletes an attribute (§4.5.0.2 "urn:ngsi-ld:null"). */
export const NGSI_NULL = 'urn:ngsi-ld:null';

const URI = /^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>"{}|\\^`]+$/;
const MAX_URI = 2048;
// §4.6.2: attribute names must not contain these characters (they would break the query language).
const NAME = /^[^\s<>"'=;()[\]\\,|!~&]+$/;
const MAX_NAME = 256;
const MAX_DEPTH = 32;
const MAX_ATTRIBUTES = 1024;
const SCOPE = /^\/[^/#+\s,;|()]+(\/[^/#+\s,;|()]+)*$/;
const LANG = /^(@none|[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*)$/;
// ISO 8601 date-time with a zone (the spec requires UTC 'Z'; offsets are accepted and kept).
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;

const bad = (detail: string): NgsiError => new NgsiError('BadRequestData', detail);

export const isUri = (s: unknown): s is string => typeof s === 'string' && s.length <= MAX_URI && URI.test(s);

export const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** True for a valid ISO 8601 date-time that also names a real instant. */
export function isDateTime(s: unknown): s is string {
  return typeof s === 'string' && DATE_TIME.test(s) && !Number.isNaN(Date.parse(s));
}

/** Checks an entity id: an absolute URI (§4.5.1). */
export function checkEntityId(id: unknown, where = 'id'): string {
  if (typeof id !== 'string' || id === '') throw bad(`${where}: an entity id is required`);
  if (!isUri(id)) throw bad(`${where}: "${clip(id)}" is not an absolute URI`);
  return id;
}

/** Checks an attribute name as sent (before expansion): allowed characters, not reserved. */
export function checkAttributeName(name: string, where = 'attribute'): string {
  if (name === '' || name.length > MAX_NAME)
    throw bad(`${where}: a name must have 1 to ${MAX_NAME} characters`);
  if (RESERVED_NAMES.has(name)) throw bad(`${where}: "${name}" is a reserved name`);
  if (!NAME.test(name)) throw bad(`${where}: "${clip(name)}" contains characters not allowed in a name`);
  return name;
}

/** Checks entity type names (string or array of strings) and expands them. */
export function parseTypes(raw: unknown, terms: Terms, where = 'type'): string[] {
  const list = Array.isArray(raw) ? raw : [raw];
  if (raw === undefined || list.length === 0) throw bad(`${where}: an entity type is required`);
  const out: string[] = [];
  for (const t of list) {
    if (typeof t !== 'string' || t === '') throw bad(`${where}: a type must be a non-empty string`);
    if (t.length > MAX_NAME || !NAME.test(t)) throw bad(`${where}: "${clip(t)}" is not a valid type name`);
    const iri = terms.expand(t);
    if (!out.includes(iri)) out.push(iri);
  }
  return out;
}

/** Checks `scope` (a string or an array of scope paths like `/Madrid/Gardens`). */
export function parseScopes(raw: unknown, where = 'scope'): string[] {
  const list = Array.isArray(raw) ? raw : [raw];
  if (list.length === 0 || list.length > 100) throw bad(`${where}: between 1 and 100 scopes`);
  const out: string[] = [];
  for (const s of list) {
    if (typeof s !== 'string' || !SCOPE.test(s) || s.length > 1024)
      throw bad(`${where}: "${clip(show(s))}" is not a scope (/Segment/Segment…)`);
    if (!out.includes(s)) out.push(s);
  }
  return out;
}

/** Parses a whole entity (create, replace, upsert). */
export function parseEntity(
  body: unknown,
  terms: Terms,
  options: { now: string; id?: string; requireType?: boolean },
): EntityInput {
  if (!isPlainObject(body)) throw bad('The entity must be a JSON object');
  const rawId = body['id'] ?? body['@id'] ?? options.id;
  const id = checkEntityId(rawId);
  if (options.id !== undefined && rawId !== options.id)
    throw bad(`id: the body's id "${clip(show(rawId))}" differs from the id in the URL`);
  const rawType = body['type'] ?? body['@type'];
  const types =
    rawType === undefined && options.requireType === false ? [] : parseTypes(rawType, terms, 'type');
  const scopes = body['scope'] === undefined ? undefined : parseScopes(body['scope']);
  return { id, types, scopes, attrs: parseAttributes(body, terms, { now: options.now }) };
}

/**
 * Parses the attributes of a fragment (every member that is not an entity member). With
 * `allowNull`, a value of `urn:ngsi-ld:null` (or JSON null) marks an attribute for deletion
 * (merge semantics) and comes back as an empty instance list.
 */
export function parseAttributes(
  body: Record<string, unknown>,
  terms: Terms,
  options: { now: string; allowNull?: boolean },
): Attrs {
  const attrs: Attrs = {};
  let count = 0;
  for (const [name, raw] of Object.entries(body)) {
    if (ENTITY_MEMBERS.has(name)) continue;
    if (++count > MAX_ATTRIBUTES) throw bad(`An entity may have at most ${MAX_ATTRIBUTES} attributes`);
    checkAttributeName(name);
    const iri = terms.expand(name);
    if (options.allowNull && isNullValue(raw)) {
      attrs[iri] = [];
      continue;
    }
    const instances = parseAttribute(name, raw, terms, options.now);
    const existing = attrs[iri];
    // Two names (a term and its IRI) for one attribute: their instances are merged.
    attrs[iri] = existing ? mergeInstanceLists(existing, instances, name) : instances;
  }
  return attrs;
}

/** True for the merge-patch deletion marker. */
export function isNullValue(raw: unknown): boolean {
  return (
    raw === null ||
    raw === NGSI_NULL ||
    (isPlainObject(raw) && (raw['value'] === NGSI_NULL || raw['object'] === NGSI_NULL))
  );
}

/**
 * Parses one attribute's value as sent: an instance object (normalized or concise), an array of
 * instances (multi-instance, distinct datasetIds, at most one default), or a bare concise value.
 */
export function parseAttribute(name: string, raw: unknown, terms: Terms, now: string): Instance[] {
  checkDepth(raw, name);
  if (Array.isArray(raw) && raw.length > 0 && raw.every((r) => isInstanceObject(r))) {
    const instances = raw.map((r, i) => parseInstance(`${name}[${i}]`, r, terms, now));
    return mergeInstanceLists([], instances, name);
  }
  return [parseInstance(name, raw, terms, now)];
}

/** An element of a multi-instance array: an object that reads as an attribute instance. */
function isInstanceObject(v: unknown): boolean {
  if (!isPlainObject(v)) return false;
  if (typeof v['type'] === 'string' && ATTRIBUTE_TYPE_SET.has(v['type'])) return true;
  return ['value', 'object', 'languageMap', 'vocab', 'valueList', 'objectList', 'json'].some((k) => k in v);
}

/** Keeps datasetIds distinct and the default instance (no datasetId) first and single. */
function mergeInstanceLists(existing: Instance[], added: Instance[], name: string): Instance[] {
  const out = [...existing];
  for (const inst of added) {
    const clash = out.findIndex((o) => o.datasetId === inst.datasetId);
    if (clash >= 0)
      throw bad(
        inst.datasetId === undefined
          ? `${name}: more than one default instance (instances without datasetId)`
          : `${name}: datasetId ${inst.datasetId} appears twice`,
      );
    if (inst.datasetId === undefined) out.unshift(inst);
    else out.push(inst);
  }
  return out;
}

const GEOMETRY_TYPES: ReadonlySet<string> = new Set([...SIMPLE_GEOMETRY_TYPES, 'GeometryCollection']);

/** The attribute type a concise (or type-less) instance object implies (§4.5.1 concise rules). */
function impliedType(obj: Record<string, unknown>): AttributeType | 'geometry' | undefined {
  if ('value' in obj) return 'Property';
  if ('object' in obj) return 'Relationship';
  if ('languageMap' in obj) return 'LanguageProperty';
  if ('vocab' in obj) return 'VocabProperty';
  if ('valueList' in obj) return 'ListProperty';
  if ('objectList' in obj) return 'ListRelationship';
  if ('json' in obj) return 'JsonProperty';
  if (typeof obj['type'] === 'string' && GEOMETRY_TYPES.has(obj['type']) && 'coordinates' in obj)
    return 'geometry';
  if (obj['type'] === 'GeometryCollection' && 'geometries' in obj) return 'geometry';
  return undefined;
}

/** Parses one instance (normalized or concise) into the stored form. */
export function parseInstance(name: string, raw: unknown, terms: Terms, now: string): Instance {
  if (raw === null || raw === undefined) throw bad(`${name}: null is not an attribute value`);
  if (!isPlainObject(raw)) {
    // Concise: a bare value is a Property's value (a string that is a URI stays a Property).
    return { type: 'Property', value: raw, createdAt: now, modifiedAt: now };
  }
  const implied = impliedType(raw);
  if (implied === 'geometry') {
    // Concise GeoProperty: the geometry itself.
    return { type: 'GeoProperty', value: checkGeometry(raw, name), createdAt: now, modifiedAt: now };
  }
  const declared = raw['type'];
  let type: AttributeType;
  if (declared === undefined) {
    // Concise object without any core member: a compound Property value.
    if (implied === undefined) return { type: 'Property', value: raw, createdAt: now, modifiedAt: now };
    type = implied;
  } else if (typeof declared === 'string' && ATTRIBUTE_TYPE_SET.has(declared)) {
    type = declared as AttributeType;
  } else if (implied === undefined) {
    // Concise compound value that has a "type" member of its own (e.g. an address typed
    // "PostalAddress", as Smart Data Models' keyValues examples carry): a Property value.
    return { type: 'Property', value: raw, createdAt: now, modifiedAt: now };
  } else {
    throw bad(`${name}: "${clip(show(declared))}" is not an attribute type (${ATTRIBUTE_TYPES.join(', ')})`);
  }
  const inst: Instance = { type };
  switch (type) {
    case 'Property':
      inst.value = required(raw, 'value', name, type);
      break;
    case 'GeoProperty':
      inst.value = checkGeometry(parseGeoValue(required(raw, 'value', name, type), name), `${name}.value`);
      break;
    case 'Relationship': {
      const object = required(raw, 'object', name, type);
      inst.object = uriOrUris(object, `${name}.object`);
      if (raw['objectType'] !== undefined) inst.objectType = typeNames(raw['objectType'], terms, name);
      break;
    }
    case 'LanguageProperty': {
      const map = required(raw, 'languageMap', name, type);
      if (!isPlainObject(map) || Object.keys(map).length === 0)
        throw bad(`${name}.languageMap: an object of language tags to strings`);
      for (const [tag, text] of Object.entries(map)) {
        if (!LANG.test(tag)) throw bad(`${name}.languageMap: "${clip(tag)}" is not a language tag`);
        if (typeof text !== 'string' && !(Array.isArray(text) && text.every((t) => typeof t === 'string')))
          throw bad(`${name}.languageMap.${tag}: a string`);
      }
      inst.languageMap = map as Record<string, string>;
      break;
    }
    case 'VocabProperty': {
      const vocab = required(raw, 'vocab', name, type);
      const list = Array.isArray(vocab) ? vocab : [vocab];
      if (list.length === 0 || list.some((v) => typeof v !== 'string' || v === '' || !NAME.test(v)))
        throw bad(`${name}.vocab: a term or IRI, or a list of them`);
      const expanded = (list as string[]).map((v) => terms.expand(v));
      inst.vocab = Array.isArray(vocab) ? expanded : expanded[0];
      break;
    }
    case 'ListProperty': {
      const list = required(raw, 'valueList', name, type);
      if (!Array.isArray(list)) throw bad(`${name}.valueList: an array`);
      inst.valueList = list;
      break;
    }
    case 'ListRelationship': {
      const list = required(raw, 'objectList', name, type);
      if (!Array.isArray(list)) throw bad(`${name}.objectList: an array`);
      inst.objectList = list.map((o: unknown, i) => {
        const target = isPlainObject(o) ? o['object'] : o;
        return { object: uriOrUris(target, `${name}.objectList[${i}]`) };
      });
      break;
    }
    case 'JsonProperty':
      inst.json = required(raw, 'json', name, type);
      break;
  }
  // Members that belong to another attribute type are a client mistake, not sub-attributes.
  for (const member of ['value', 'object', 'languageMap', 'vocab', 'valueList', 'objectList', 'json'])
    if (member in raw && !(member in inst) && !(type === 'GeoProperty' && member === 'value'))
      throw bad(`${name}: a ${type} has no "${member}" member`);
  if (raw['datasetId'] !== undefined) {
    if (!isUri(raw['datasetId']))
      throw bad(`${name}.datasetId: "${clip(show(raw['datasetId']))}" is not a URI`);
    inst.datasetId = raw['datasetId'];
  }
  if (raw['observedAt'] !== undefined) {
    if (!isDateTime(raw['observedAt']))
      throw bad(`${name}.observedAt: "${clip(show(raw['observedAt']))}" is not an ISO 8601 date-time`);
    inst.observedAt = raw['observedAt'];
  }
  if (raw['unitCode'] !== undefined) {
    if (typeof raw['unitCode'] !== 'string' || raw['unitCode'] === '' || raw['unitCode'].length > 64)
      throw bad(`${name}.unitCode: a UN/CEFACT unit code string`);
    inst.unitCode = raw['unitCode'];
  }
  inst.createdAt = now;
  inst.modifiedAt = now;
  for (const [sub, subRaw] of Object.entries(raw)) {
    if (INSTANCE_MEMBERS.has(sub)) continue;
    checkAttributeName(sub, `${name}.${sub}`);
    if (Array.isArray(subRaw) && subRaw.length > 0 && subRaw.every((r) => isInstanceObject(r)))
      throw bad(`${name}.${sub}: a sub-attribute has a single instance`);
    inst[terms.expand(sub)] = parseInstance(`${name}.${sub}`, subRaw, terms, now);
  }
  return inst;
}

function required(raw: Record<string, unknown>, member: string, name: string, type: string): unknown {
  const v = raw[member];
  if (v === undefined || v === null) throw bad(`${name}: a ${type} needs a "${member}"`);
  return v;
}

/** GeoProperty values are GeoJSON geometries; a JSON string holding one is accepted too. */
function parseGeoValue(v: unknown, name: string): unknown {
  if (typeof v !== 'string') return v;
  try {
    return JSON.parse(v) as unknown;
  } catch {
    throw bad(`${name}.value: not a GeoJSON geometry`);
  }
}

function uriOrUris(v: unknown, where: string): string | string[] {
  if (Array.isArray(v)) {
    if (v.length === 0) throw bad(`${where}: an empty list of objects`);
    return v.map((o, i) => {
      if (!isUri(o)) throw bad(`${where}[${i}]: "${clip(show(o))}" is not a URI`);
      return o;
    });
  }
  if (!isUri(v)) throw bad(`${where}: "${clip(show(v))}" is not a URI`);
  return v;
}

function typeNames(v: unknown, terms: Terms, name: string): string | string[] {
  if (Array.isArray(v)) return parseTypes(v, terms, `${name}.objectType`);
  return parseTypes(v, terms, `${name}.objectType`)[0] as string;
}

/** Refuses values nested deeper than MAX_DEPTH (no stack exhaustion, no pathological documents). */
function checkDepth(v: unknown, name: string): void {
  const stack: [unknown, number][] = [[v, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop() as [unknown, number];
    if (typeof node !== 'object' || node === null) continue;
    if (depth >= MAX_DEPTH) throw bad(`${name}: nested deeper than ${MAX_DEPTH} levels`);
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
}

/** Client data as text for an error message (objects as JSON). */
export function show(v: unknown): string {
  if (typeof v === 'string') return v;
  // JSON.stringify answers undefined for undefined and functions.
  const json = JSON.stringify(v) as string | undefined;
  return json ?? typeof v;
}

/** Shortens client text quoted back in an error message. */
export function clip(s: string, max = 80): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** The default instance of an attribute (no datasetId), else undefined. */
export function defaultInstance(instances: readonly Instance[] | undefined): Instance | undefined {
  return instances?.find((i) => i.datasetId === undefined);
}
