/**
 * The NGSI-LD temporal API's input (ETSI GS CIM 009 v1.8 §5.7.3–4, §5.6.11–16, §4.5.8–9):
 * temporal query parameters (timerel, timeAt, endTimeAt, timeproperty, lastN, aggrMethods,
 * aggrPeriodDuration, the representation options) and temporal entity bodies (attributes as
 * lists of instances in time). Pure functions: every refusal is BadRequestData before any SQL.
 */
import {
  checkAttributeName,
  checkEntityId,
  clip,
  ENTITY_MEMBERS,
  isDateTime,
  isPlainObject,
  parseInstance,
  parseScopes,
  parseTypes,
  type Attrs,
  type Instance,
  type Terms,
} from './entity.model.ts';
import { DEFAULT_LIMIT, MAX_LIMIT, param, parseOptions, type EntitySelector } from './entity.query.ts';
import { NgsiError } from './errors.ts';
import { parseGeoQuery, type GeoQuery } from './geo.ts';
import { parseAttrList } from './query.lang.ts';

const bad = (detail: string): NgsiError => new NgsiError('BadRequestData', detail);

/** Most instances of one attribute in one answer (and the largest `lastN`). */
export const MAX_INSTANCES = 10_000;
/** Most instances in one temporal entity write. */
export const MAX_WRITE_INSTANCES = 10_000;

export const AGGREGATION_METHODS = [
  'totalCount',
  'distinctCount',
  'sum',
  'avg',
  'min',
  'max',
  'stddev',
  'sumsq',
] as const;
export type AggregationMethod = (typeof AGGREGATION_METHODS)[number];

/** Which instance time a temporal query selects and orders by. */
export type TimeProperty = 'observedAt' | 'createdAt' | 'modifiedAt';

/** An aggregation period: fixed length (seconds), calendar months, or the whole range (PT0S). */
export type Period =
  { kind: 'fixed'; seconds: number } | { kind: 'months'; months: number } | { kind: 'whole' };

export interface TemporalQuery {
  selectors: EntitySelector[];
  attrs?: string[] | undefined;
  q?: string | undefined;
  geoQ?: GeoQuery | undefined;
  /** Instants (ISO text) bounding the instances: from ≤ t < to (either may be open). */
  from?: string | undefined;
  to?: string | undefined;
  timeproperty: TimeProperty;
  lastN?: number | undefined;
  representation: 'normalized' | 'temporalValues' | 'aggregatedValues';
  sysAttrs: boolean;
  aggregation?: { methods: AggregationMethod[]; period: Period } | undefined;
  limit: number;
  offset: number;
  after?: string | undefined;
  count: boolean;
}

/** Parses an ISO 8601 duration (PnYnMnWnDTnHnMnS) into a period; months and years only whole. */
export function parseDuration(raw: string, where = 'aggrPeriodDuration'): Period {
  const m =
    /^P(?:(\d{1,4})Y)?(?:(\d{1,5})M)?(?:(\d{1,6})W)?(?:(\d{1,7})D)?(?:T(?:(\d{1,8})H)?(?:(\d{1,10})M)?(?:(\d{1,12}(?:\.\d{1,6})?)S)?)?$/.exec(
      raw,
    );
  if (!m || raw === 'P' || raw.endsWith('T'))
    throw bad(`${where}: "${clip(raw)}" is not an ISO 8601 duration such as PT1H or P1D`);
  const n = (i: number) => Number(m[i] ?? 0);
  const months = n(1) * 12 + n(2);
  const seconds = n(3) * 604_800 + n(4) * 86_400 + n(5) * 3_600 + n(6) * 60 + n(7);
  if (months > 0 && seconds > 0)
    throw bad(`${where}: mixing months or years with days or hours is not supported ("${clip(raw)}")`);
  if (months > 0) return { kind: 'months', months };
  if (seconds === 0) return { kind: 'whole' };
  if (seconds < 1) throw bad(`${where}: the period must be at least one second`);
  return { kind: 'fixed', seconds };
}

/** The temporal query of GET /temporal/entities (or the retrieval of one entity: `single`). */
export function temporalQueryFrom(query: Record<string, unknown>, mode: { single: boolean }): TemporalQuery {
  const known = new Set([
    'id',
    'idPattern',
    'type',
    'attrs',
    'q',
    'georel',
    'geometry',
    'coordinates',
    'geoproperty',
    'timerel',
    'timeAt',
    'endTimeAt',
    'timeproperty',
    'lastN',
    'options',
    'format',
    'aggrMethods',
    'aggrPeriodDuration',
    'limit',
    'offset',
    'after',
    'count',
    'local',
    'lang',
  ]);
  for (const name of Object.keys(query))
    if (!known.has(name)) throw bad(`${clip(name)}: not a parameter of the temporal API`);
  const { flags, sysAttrs } = parseOptions({ options: undefined, format: param(query, 'format') });
  const options = (param(query, 'options') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const o of options)
    if (!['temporalValues', 'aggregatedValues', 'sysAttrs', 'normalized', 'count'].includes(o))
      throw bad(`options: "${clip(o)}" is not an option of the temporal API`);
  if (flags.has('keyValues') || flags.has('concise'))
    throw bad('format: the temporal API answers normalized, temporalValues or aggregatedValues');
  const temporalValues = options.includes('temporalValues') || param(query, 'format') === 'temporalValues';
  const aggregated = options.includes('aggregatedValues');
  if (temporalValues && aggregated)
    throw bad('options: temporalValues and aggregatedValues exclude each other');

  const timerel = param(query, 'timerel');
  const timeAt = param(query, 'timeAt');
  const endTimeAt = param(query, 'endTimeAt');
  let from: string | undefined;
  let to: string | undefined;
  const instant = (raw: string | undefined, name: string): string => {
    if (raw === undefined) throw bad(`${name}: required with timerel=${timerel ?? ''}`);
    if (!isDateTime(raw)) throw bad(`${name}: "${clip(raw)}" is not an ISO 8601 date-time`);
    return new Date(raw).toISOString();
  };
  switch (timerel) {
    case undefined:
      if (timeAt !== undefined || endTimeAt !== undefined) throw bad('timeAt: given without timerel');
      break;
    case 'before':
      to = instant(timeAt, 'timeAt');
      if (endTimeAt !== undefined) throw bad('endTimeAt: only with timerel=between');
      break;
    case 'after':
      from = instant(timeAt, 'timeAt');
      if (endTimeAt !== undefined) throw bad('endTimeAt: only with timerel=between');
      break;
    case 'between':
      from = instant(timeAt, 'timeAt');
      to = instant(endTimeAt, 'endTimeAt');
      if (Date.parse(to) <= Date.parse(from))
        throw bad(`endTimeAt: ${endTimeAt ?? ''} is not after timeAt ${timeAt ?? ''} (inverted range)`);
      break;
    default:
      throw bad(`timerel: "${clip(timerel)}" is not before, after or between`);
  }
  const tp = param(query, 'timeproperty') ?? 'observedAt';
  if (tp !== 'observedAt' && tp !== 'createdAt' && tp !== 'modifiedAt')
    throw bad(`timeproperty: "${clip(tp)}" is not observedAt, createdAt or modifiedAt`);
  const lastRaw = param(query, 'lastN');
  let lastN: number | undefined;
  if (lastRaw !== undefined) {
    if (!/^\d{1,9}$/.test(lastRaw) || Number(lastRaw) < 1)
      throw bad(`lastN: "${clip(lastRaw)}" is not a positive integer`);
    lastN = Number(lastRaw);
    if (lastN > MAX_INSTANCES) throw bad(`lastN: ${lastN} exceeds the maximum of ${MAX_INSTANCES} instances`);
  }

  let aggregation: TemporalQuery['aggregation'];
  const methodsRaw = param(query, 'aggrMethods');
  const periodRaw = param(query, 'aggrPeriodDuration');
  if (aggregated) {
    if (methodsRaw === undefined) throw bad('aggrMethods: required with options=aggregatedValues');
    const methods = methodsRaw.split(',').map((s) => s.trim());
    for (const m of methods)
      if (!(AGGREGATION_METHODS as readonly string[]).includes(m))
        throw bad(`aggrMethods: "${clip(m)}" is not one of ${AGGREGATION_METHODS.join(', ')}`);
    aggregation = {
      methods: [...new Set(methods)] as AggregationMethod[],
      period: periodRaw === undefined ? { kind: 'whole' } : parseDuration(periodRaw),
    };
    if (lastN !== undefined) throw bad('lastN: not with options=aggregatedValues');
  } else if (methodsRaw !== undefined || periodRaw !== undefined)
    throw bad('aggrMethods: only with options=aggregatedValues');

  const geoQ = parseGeoQuery({
    georel: param(query, 'georel'),
    geometry: param(query, 'geometry'),
    coordinates: param(query, 'coordinates'),
    geoproperty: param(query, 'geoproperty'),
  });
  const idRaw = param(query, 'id');
  const ids = idRaw?.split(',').map((s, i) => checkEntityId(s.trim(), `id[${i}]`));
  if (ids && ids.length > MAX_LIMIT) throw bad(`id: at most ${MAX_LIMIT} ids`);
  const selector: EntitySelector = { ids, idPattern: param(query, 'idPattern'), type: param(query, 'type') };
  const attrs = parseAttrList(param(query, 'attrs'));
  const q = param(query, 'q');
  if (!mode.single && !selector.ids && !selector.idPattern && !selector.type && !attrs && !q && !geoQ)
    throw bad('A temporal query needs at least one of type, id, idPattern, attrs, q or a geo-query');

  const int = (name: string, fallback: number): number => {
    const raw = param(query, name);
    if (raw === undefined) return fallback;
    if (!/^\d{1,9}$/.test(raw)) throw bad(`${name}: "${clip(raw)}" is not a non-negative integer`);
    return Number(raw);
  };
  const limit = int('limit', DEFAULT_LIMIT);
  if (limit < 1 || limit > MAX_LIMIT)
    throw new NgsiError('TooManyResults', `limit: 1 to ${MAX_LIMIT} entities per page (got ${limit})`);
  const after = param(query, 'after');
  if (after !== undefined) checkEntityId(after, 'after');
  const countRaw = param(query, 'count');
  if (countRaw !== undefined && countRaw !== 'true' && countRaw !== 'false')
    throw bad('count: true or false');
  return {
    selectors: [selector],
    attrs,
    q,
    geoQ,
    from,
    to,
    timeproperty: tp,
    lastN,
    representation: aggregated ? 'aggregatedValues' : temporalValues ? 'temporalValues' : 'normalized',
    sysAttrs: sysAttrs || options.includes('sysAttrs'),
    aggregation,
    limit,
    offset: int('offset', 0),
    after,
    count: countRaw === 'true' || options.includes('count'),
  };
}

/** A temporal entity as sent: attributes as lists of instances in time (§4.5.8). */
export interface TemporalEntityInput {
  id: string;
  types: string[];
  scopes: string[] | undefined;
  /** Per attribute IRI, its instances in time. */
  attrs: Attrs;
}

/**
 * Parses a temporal entity (create/update, §5.6.11) or a fragment of attributes (append,
 * §5.6.12: `fragment`, without id and type); instanceIds sent are ignored (the broker assigns them).
 */
export function parseTemporalEntity(
  body: unknown,
  terms: Terms,
  options: { now: string; fragment?: boolean; id?: string },
): TemporalEntityInput {
  if (!isPlainObject(body)) throw bad('A temporal entity must be a JSON object');
  let id = options.id ?? '';
  let types: string[] = [];
  if (!options.fragment) {
    id = checkEntityId(body['id'] ?? body['@id']);
    const rawType = body['type'] ?? body['@type'];
    if (rawType === undefined) throw bad('type: required');
    types = parseTypes(rawType, terms);
  } else if (body['id'] !== undefined && body['id'] !== options.id)
    throw bad('id: the body id differs from the id in the URL');
  const scopes = body['scope'] === undefined ? undefined : parseScopes(body['scope']);
  const attrs: Attrs = {};
  let count = 0;
  for (const [name, raw] of Object.entries(body)) {
    if (ENTITY_MEMBERS.has(name)) continue;
    checkAttributeName(name);
    const list = Array.isArray(raw) ? raw : [raw];
    if (list.length === 0) throw bad(`${name}: an attribute needs at least one instance`);
    count += list.length;
    if (count > MAX_WRITE_INSTANCES)
      throw new NgsiError(
        'PayloadTooLarge',
        `A temporal write holds at most ${MAX_WRITE_INSTANCES} instances`,
      );
    attrs[terms.expand(name)] = list.map((r, i) => {
      if (!isPlainObject(r)) throw bad(`${name}[${i}]: an attribute instance object`);
      const { instanceId: _ignored, ...rest } = r;
      return parseInstance(`${name}[${i}]`, rest, terms, options.now);
    });
  }
  return { id, types, scopes, attrs };
}

/** The UUID inside an instanceId, or undefined when it is not one of ours. */
export function instanceUuid(instanceId: string): string | undefined {
  const m =
    /^urn:ngsi-ld:attribute:instance:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/.exec(
      instanceId,
    );
  return m?.[1];
}

/** The time an instance is placed at on the time axis: observedAt, else when it was recorded. */
export const instanceTime = (inst: Instance, recordedAt: string): string =>
  typeof inst.observedAt === 'string' ? new Date(inst.observedAt).toISOString() : recordedAt;
