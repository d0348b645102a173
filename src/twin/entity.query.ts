/**
 * Query entities (§5.7.2 GET /entities, §5.7.4 POST /entityOperations/query): the parameters of
 * either form parsed into one `QuerySpec`, compiled to SQL conditions over `twin.entities`
 * (type selection, ids, id pattern, attribute presence, q, geoQ, scopeQ, jurisdiction), and run
 * with offset or keyset pagination. Parsing refuses bad input with BadRequestData before any SQL.
 */
import { sql, type RawBuilder } from 'kysely';
import { readScope } from './access.ts';
import { isPlainObject, isUri, clip, type Terms } from './entity.model.ts';
import { countEntities, findEntities, queryEntities, type StoredEntity } from './entity.store.ts';
import { relationshipTargets } from './entity.render.ts';
import { LOCATION, requireTenant, type TwinCall, type TwinRuntime } from './entity.service.ts';
import { NgsiError } from './errors.ts';
import { geoQueryToSql, parseGeoQuery, type GeoQuery } from './geo.ts';
import {
  parseAttrList,
  parseScopeQ,
  parseTypeSelection,
  qToSql,
  scopeQToSql,
  typeSelectionToSql,
} from './query.lang.ts';
import type { Format } from './entity.render.ts';

export const DEFAULT_LIMIT = 20;
export const MAX_LIMIT = 1000;
const MAX_IDS = 1000;
const MAX_JOIN_LEVEL = 5;
/** At most this many linked entities are fetched for one response. */
const MAX_LINKED = 1000;

/** One entity selector of a query (`entities` of a POST query; id/idPattern/type of a GET). */
export interface EntitySelector {
  ids?: string[] | undefined;
  idPattern?: string | undefined;
  type?: string | undefined;
}

export interface QuerySpec {
  selectors: EntitySelector[];
  attrs?: string[] | undefined;
  pick?: string[] | undefined;
  omit?: string[] | undefined;
  q?: string | undefined;
  geoQ?: GeoQuery | undefined;
  scopeQ?: string | undefined;
  lang?: string | undefined;
  limit: number;
  offset: number;
  count: boolean;
  after?: string | undefined;
  format: Format;
  sysAttrs: boolean;
  geometryProperty?: string | undefined;
  /** Linked-entity retrieval (§4.5.23): `flat` adds the targets to the result, `inline` embeds them. */
  join?: 'flat' | 'inline' | undefined;
  joinLevel: number;
}

const bad = (detail: string) => new NgsiError('BadRequestData', detail);

/** A single-valued query parameter (repeated parameters are refused). */
export function param(query: Record<string, unknown>, name: string): string | undefined {
  const v = query[name];
  if (v === undefined) return undefined;
  if (Array.isArray(v)) {
    if (v.length === 1 && typeof v[0] === 'string') return v[0];
    throw bad(`${name}: given more than once`);
  }
  if (typeof v !== 'string') throw bad(`${name}: expected text`);
  return v;
}

function integer(query: Record<string, unknown>, name: string, fallback: number): number {
  const raw = param(query, name);
  if (raw === undefined) return fallback;
  if (!/^\d{1,9}$/.test(raw)) throw bad(`${name}: "${clip(raw)}" is not a non-negative integer`);
  return Number(raw);
}

/** `options` (and v1.8 `format`): representation and sysAttrs. */
export function parseOptions(query: Record<string, unknown>): {
  format: Format;
  sysAttrs: boolean;
  flags: Set<string>;
} {
  const flags = new Set<string>();
  for (const name of ['options', 'format']) {
    const raw = param(query, name);
    if (raw !== undefined)
      for (const f of raw.split(',')) {
        const t = f.trim();
        if (t !== '') flags.add(t);
      }
  }
  const known = [
    'keyValues',
    'concise',
    'normalized',
    'sysAttrs',
    'noOverwrite',
    'update',
    'replace',
    'count',
  ];
  for (const f of flags) if (!known.includes(f)) throw bad(`options: unknown option "${clip(f)}"`);
  const formats = ['keyValues', 'concise', 'normalized'].filter((f) => flags.has(f));
  if (formats.length > 1) throw bad(`options: ${formats.join(' and ')} exclude each other`);
  return {
    format: (formats[0] as Format | undefined) ?? 'normalized',
    sysAttrs: flags.has('sysAttrs'),
    flags,
  };
}

/** The shared paging and representation parameters. */
function pagingAndShape(query: Record<string, unknown>) {
  const limit = integer(query, 'limit', DEFAULT_LIMIT);
  if (limit > MAX_LIMIT)
    throw new NgsiError('TooManyResults', `limit ${limit} exceeds the maximum page size ${MAX_LIMIT}`);
  const offset = integer(query, 'offset', 0);
  const countRaw = param(query, 'count');
  if (countRaw !== undefined && countRaw !== 'true' && countRaw !== 'false')
    throw bad('count: true or false');
  const { format, sysAttrs, flags } = parseOptions(query);
  const joinRaw = param(query, 'join');
  if (joinRaw !== undefined && !['flat', 'inline', '@none'].includes(joinRaw))
    throw bad('join: flat, inline or @none');
  const joinLevel = integer(query, 'joinLevel', 1);
  if (joinLevel < 1 || joinLevel > MAX_JOIN_LEVEL) throw bad(`joinLevel: 1 to ${MAX_JOIN_LEVEL}`);
  const after = param(query, 'after');
  if (after !== undefined && !isUri(after)) throw bad('after: an entity id');
  return {
    limit,
    offset,
    count: countRaw === 'true' || flags.has('count'),
    after,
    format,
    sysAttrs,
    join: joinRaw === 'flat' ? ('flat' as const) : joinRaw === 'inline' ? ('inline' as const) : undefined,
    joinLevel,
  };
}

function idList(raw: string | undefined): string[] | undefined {
  if (raw === undefined) return undefined;
  const ids = raw.split(',').map((s) => s.trim());
  if (ids.length > MAX_IDS) throw bad(`id: at most ${MAX_IDS} ids`);
  for (const id of ids) if (!isUri(id)) throw bad(`id: "${clip(id)}" is not a URI`);
  return ids;
}

/** GET /entities parameters → QuerySpec. */
export function specFromQuery(query: Record<string, unknown>): QuerySpec {
  const selector: EntitySelector = {
    ids: idList(param(query, 'id')),
    idPattern: param(query, 'idPattern'),
    type: param(query, 'type'),
  };
  const geoQ = parseGeoQuery({
    georel: param(query, 'georel'),
    geometry: param(query, 'geometry'),
    coordinates: param(query, 'coordinates'),
    geoproperty: param(query, 'geoproperty'),
  });
  return {
    selectors: [selector],
    attrs: parseAttrList(param(query, 'attrs')),
    pick: parseAttrList(param(query, 'pick'), 'pick'),
    omit: parseAttrList(param(query, 'omit'), 'omit'),
    q: param(query, 'q'),
    geoQ,
    scopeQ: param(query, 'scopeQ'),
    lang: param(query, 'lang'),
    geometryProperty: param(query, 'geometryProperty'),
    ...pagingAndShape(query),
  };
}

const optionalString = (body: Record<string, unknown>, name: string): string | undefined => {
  const v = body[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw bad(`${name}: a string`);
  return v;
};

/** POST /entityOperations/query body (§5.2.23 Query) + URL parameters → QuerySpec. */
export function specFromBody(body: unknown, query: Record<string, unknown>): QuerySpec {
  if (!isPlainObject(body)) throw bad('The query must be a JSON object');
  if (body['type'] !== 'Query') throw bad('type: a query document has type "Query"');
  const selectors: EntitySelector[] = [];
  const entities = body['entities'];
  if (entities !== undefined) {
    if (!Array.isArray(entities) || entities.length === 0 || entities.length > 100)
      throw bad('entities: a list of 1 to 100 entity selectors');
    for (const [i, s] of entities.entries()) {
      if (!isPlainObject(s)) throw bad(`entities[${i}]: an object`);
      const id = s['id'];
      if (id !== undefined && !isUri(id)) throw bad(`entities[${i}].id: a URI`);
      selectors.push({
        ids: typeof id === 'string' ? [id] : undefined,
        idPattern: optionalString(s, 'idPattern'),
        type: optionalString(s, 'type'),
      });
    }
  }
  const listOf = (name: string): string[] | undefined => {
    const v = body[name];
    if (v === undefined) return undefined;
    if (typeof v === 'string') return parseAttrList(v, name);
    if (!Array.isArray(v) || v.some((a) => typeof a !== 'string')) throw bad(`${name}: a list of names`);
    return parseAttrList((v as string[]).join(','), name);
  };
  let geoQ: GeoQuery | undefined;
  if (body['geoQ'] !== undefined) {
    const g = body['geoQ'];
    if (!isPlainObject(g)) throw bad('geoQ: an object');
    geoQ = parseGeoQuery({
      georel: optionalString(g, 'georel'),
      geometry: optionalString(g, 'geometry'),
      coordinates: g['coordinates'],
      geoproperty: optionalString(g, 'geoproperty'),
    });
    if (!geoQ) throw bad('geoQ: georel, geometry and coordinates are required');
  }
  return {
    selectors: selectors.length > 0 ? selectors : [{}],
    attrs: listOf('attrs'),
    pick: listOf('pick'),
    omit: listOf('omit'),
    q: optionalString(body, 'q'),
    geoQ,
    scopeQ: optionalString(body, 'scopeQ'),
    lang: optionalString(body, 'lang') ?? param(query, 'lang'),
    geometryProperty: param(query, 'geometryProperty'),
    ...pagingAndShape(query),
  };
}

/** A regular expression safe to hand to PostgreSQL: length-limited and compilable. */
function checkPattern(p: string): string {
  if (p.length > 256) throw bad('idPattern: at most 256 characters');
  try {
    new RegExp(p, 'u');
  } catch {
    throw bad(`idPattern: "${clip(p)}" is not a regular expression`);
  }
  return p;
}

export function selectorSql(s: EntitySelector, terms: Terms): RawBuilder<boolean> | undefined {
  const parts: RawBuilder<boolean>[] = [];
  if (s.type !== undefined)
    parts.push(typeSelectionToSql(parseTypeSelection(s.type), (t) => terms.expand(t)));
  if (s.ids !== undefined) parts.push(sql<boolean>`e.id = any(${s.ids}::text[])`);
  if (s.idPattern !== undefined) parts.push(sql<boolean>`e.id ~ ${checkPattern(s.idPattern)}`);
  if (parts.length === 0) return undefined;
  return sql<boolean>`${sql.join(parts, sql` and `)}`;
}

/** The SQL of a geoQ over `location` (the indexed column) or another GeoProperty. */
export function geoSql(geoQ: GeoQuery, terms: Terms): RawBuilder<boolean> {
  const iri = terms.expand(geoQ.geoproperty);
  const column =
    iri === LOCATION
      ? sql`e.location`
      : sql`st_setsrid(st_geomfromgeojson((e.attrs -> ${iri} -> 0 -> 'value')::text), 4326)`;
  return geoQueryToSql(geoQ, column);
}

/** The conditions of a query (without tenant), jurisdiction included. */
export function conditions(rt: TwinRuntime, tc: TwinCall, spec: QuerySpec): RawBuilder<boolean>[] {
  const where: RawBuilder<boolean>[] = [];
  const expand = (t: string) => tc.terms.expand(t);
  const selectors = spec.selectors.map((s) => selectorSql(s, tc.terms));
  if (selectors.every((s) => s !== undefined))
    where.push(sql<boolean>`(${sql.join(selectors, sql`) or (`)})`);
  if (spec.attrs !== undefined) where.push(sql<boolean>`e.attrs ?| ${spec.attrs.map(expand)}::text[]`);
  if (spec.q !== undefined) where.push(qToSql(spec.q, expand));
  if (spec.geoQ !== undefined) where.push(geoSql(spec.geoQ, tc.terms));
  if (spec.scopeQ !== undefined) where.push(scopeQToSql(parseScopeQ(spec.scopeQ)));
  const scope = readScope(rt.access, tc.call);
  where.push(scope);
  return where;
}

export interface QueryPage {
  entities: StoredEntity[];
  count: number | undefined;
  /** The keyset continuation (the last id) when the page is full. */
  lastId: string | undefined;
}

/** Runs a query: one page and, with `count`, the total. */
export async function runQuery(rt: TwinRuntime, tc: TwinCall, spec: QuerySpec): Promise<QueryPage> {
  const db = rt.database.db;
  await requireTenant(db, tc.tenant);
  const where = conditions(rt, tc, spec);
  const q = { tenant: tc.tenant, where, limit: spec.limit, offset: spec.offset, after: spec.after };
  const [entities, count] = await Promise.all([
    queryEntities(db, q),
    spec.count ? countEntities(db, q) : Promise.resolve(undefined),
  ]);
  const last = entities[entities.length - 1];
  return { entities, count, lastId: entities.length === spec.limit && last ? last.id : undefined };
}

/**
 * The entities reachable from `roots` through relationships, up to `levels` hops, that the caller
 * may see (linked-entity retrieval, §4.5.23); bounded to MAX_LINKED entities.
 */
export async function linkedEntities(
  rt: TwinRuntime,
  tc: TwinCall,
  roots: StoredEntity[],
  levels: number,
): Promise<Map<string, StoredEntity>> {
  const found = new Map<string, StoredEntity>();
  const seen = new Set(roots.map((e) => e.id));
  let frontier = roots;
  const scope = readScope(rt.access, tc.call);
  for (let level = 0; level < levels && frontier.length > 0 && found.size < MAX_LINKED; level++) {
    const ids = [...new Set(frontier.flatMap(relationshipTargets))].filter((id) => !seen.has(id));
    for (const id of ids) seen.add(id);
    const next = await findEntities(rt.database.db, tc.tenant, ids.slice(0, MAX_LINKED - found.size), scope);
    for (const e of next) found.set(e.id, e);
    frontier = next;
  }
  return found;
}

/** What `join` adds to a response: entities to embed (inline) or to append (flat). */
export async function joinFor(
  rt: TwinRuntime,
  tc: TwinCall,
  spec: Pick<QuerySpec, 'join' | 'joinLevel'>,
  roots: StoredEntity[],
): Promise<{ inline?: Map<string, StoredEntity>; extra: StoredEntity[] }> {
  if (spec.join === undefined) return { extra: [] };
  const linked = await linkedEntities(rt, tc, roots, spec.joinLevel);
  if (spec.join === 'inline') return { inline: linked, extra: [] };
  const present = new Set(roots.map((e) => e.id));
  return { extra: [...linked.values()].filter((e) => !present.has(e.id)) };
}
