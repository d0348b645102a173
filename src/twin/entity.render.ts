/**
 * The NGSI-LD information model on the way out (§4.5, §5.2, §4.5.16–17): a stored entity rendered
 * in the requested representation — normalized, concise or simplified (keyValues), optionally
 * as GeoJSON — with terms compacted by the request's context, attributes projected (`attrs`,
 * `pick`, `omit`), language maps resolved (`lang`) and system attributes on request (`sysAttrs`).
 */
import { INSTANCE_MEMBERS, type Attrs, type Instance, type Terms } from './entity.model.ts';

/** A stored entity as the store reads it. */
export interface EntityRecord {
  id: string;
  types: string[];
  scopes: string[] | null;
  createdAt: string;
  modifiedAt: string;
  attrs: Attrs;
}

export type Format = 'normalized' | 'concise' | 'keyValues';

export interface RenderOptions {
  format: Format;
  sysAttrs: boolean;
  /** `lang`: a language tag, '*' (all), or undefined (maps kept). */
  lang?: string | undefined;
  /** Expanded attribute IRIs to keep (`attrs`, or the attributes of `pick`). */
  keepAttrs?: ReadonlySet<string> | undefined;
  /** Expanded attribute IRIs to drop (`omit`). */
  dropAttrs?: ReadonlySet<string> | undefined;
  /** `pick`/`omit` may name `id` and `type` too. */
  keepId?: boolean;
  keepType?: boolean;
  keepScope?: boolean;
  /** `join=inline` (§4.5.23): linked entities by id, embedded under their relationships' `entity`. */
  inline?: ReadonlyMap<string, EntityRecord> | undefined;
  /** How many more levels of relationships to embed (joinLevel). */
  joinLevel?: number;
}

const one = <T>(list: T[]): T | T[] => (list.length === 1 ? (list[0] as T) : list);

/** Renders one stored entity (without `@context`, which the caller adds per its media type). */
export function renderEntity(e: EntityRecord, terms: Terms, o: RenderOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (o.keepId !== false) out['id'] = e.id;
  if (o.keepType !== false) out['type'] = one(e.types.map((t) => terms.compact(t)));
  if (e.scopes && e.scopes.length > 0 && o.keepScope !== false) out['scope'] = one(e.scopes);
  if (o.sysAttrs && o.format !== 'keyValues') {
    out['createdAt'] = e.createdAt;
    out['modifiedAt'] = e.modifiedAt;
  }
  for (const [iri, instances] of Object.entries(e.attrs)) {
    if (o.keepAttrs && !o.keepAttrs.has(iri)) continue;
    if (o.dropAttrs?.has(iri)) continue;
    const rendered = instances.map((inst) => renderInstance(inst, terms, o));
    out[terms.compact(iri)] = rendered.length === 1 ? rendered[0] : rendered;
  }
  return out;
}

/** Renders an attribute's instances as a fragment (GET …/attrs/{attrId} is not in the API; used by notifications later). */
export function renderAttribute(instances: Instance[], terms: Terms, o: RenderOptions): unknown {
  const rendered = instances.map((inst) => renderInstance(inst, terms, o));
  return rendered.length === 1 ? rendered[0] : rendered;
}

/** The main value of an instance, as keyValues shows it. */
function simplified(inst: Instance, terms: Terms, lang: string | undefined): unknown {
  switch (inst.type) {
    case 'Relationship':
      return inst.object;
    case 'LanguageProperty':
      return lang !== undefined && lang !== '*' && inst.languageMap
        ? pickLanguage(inst.languageMap, lang).value
        : { languageMap: inst.languageMap };
    case 'VocabProperty':
      return Array.isArray(inst.vocab)
        ? inst.vocab.map((v) => terms.compact(v))
        : terms.compact(inst.vocab ?? '');
    case 'ListProperty':
      return inst.valueList;
    case 'ListRelationship':
      return inst.objectList;
    case 'JsonProperty':
      return inst.json;
    default:
      return inst.value;
  }
}

function renderInstance(inst: Instance, terms: Terms, o: RenderOptions): unknown {
  if (o.format === 'keyValues') return simplified(inst, terms, o.lang);
  const out: Record<string, unknown> = {};
  const concise = o.format === 'concise';
  let type: string = inst.type;
  switch (inst.type) {
    case 'LanguageProperty':
      if (o.lang !== undefined && o.lang !== '*' && inst.languageMap) {
        // §4.15: with `lang`, a LanguageProperty is returned as a Property in that language.
        const picked = pickLanguage(inst.languageMap, o.lang);
        type = 'Property';
        out['value'] = picked.value;
        out['lang'] = picked.lang;
      } else out['languageMap'] = inst.languageMap;
      break;
    case 'VocabProperty':
      out['vocab'] = Array.isArray(inst.vocab)
        ? inst.vocab.map((v) => terms.compact(v))
        : terms.compact(inst.vocab ?? '');
      break;
    case 'Relationship':
      out['object'] = inst.object;
      if (o.inline && (o.joinLevel ?? 0) > 0) {
        const targets = (Array.isArray(inst.object) ? inst.object : [inst.object ?? ''])
          .map((id) => o.inline?.get(id))
          .filter((e): e is EntityRecord => e !== undefined)
          .map((e) => renderEntity(e, terms, { ...o, joinLevel: (o.joinLevel ?? 1) - 1 }));
        if (targets.length > 0) out['entity'] = Array.isArray(inst.object) ? targets : targets[0];
      }
      if (inst.objectType !== undefined)
        out['objectType'] = Array.isArray(inst.objectType)
          ? inst.objectType.map((t) => terms.compact(t))
          : terms.compact(inst.objectType);
      break;
    case 'ListProperty':
      out['valueList'] = inst.valueList;
      break;
    case 'ListRelationship':
      out['objectList'] = inst.objectList;
      break;
    case 'JsonProperty':
      out['json'] = inst.json;
      break;
    default:
      out['value'] = inst.value;
  }
  if (inst.datasetId !== undefined) out['datasetId'] = inst.datasetId;
  if (inst.observedAt !== undefined) out['observedAt'] = inst.observedAt;
  if (inst.unitCode !== undefined) out['unitCode'] = inst.unitCode;
  if (o.sysAttrs) {
    if (inst.createdAt !== undefined) out['createdAt'] = inst.createdAt;
    if (inst.modifiedAt !== undefined) out['modifiedAt'] = inst.modifiedAt;
  }
  let subs = 0;
  for (const [key, sub] of Object.entries(inst)) {
    if (INSTANCE_MEMBERS.has(key)) continue;
    subs++;
    out[terms.compact(key)] = renderInstance(sub as Instance, terms, o);
  }
  if (!concise) return { type, ...out };
  // Concise (§4.5.17): the type is implied by the member present; a lone value stands for itself
  // unless it is an object (which would read as a compound value) or a GeoProperty's geometry.
  const members = Object.keys(out);
  if (
    type === 'Property' &&
    members.length === 1 &&
    subs === 0 &&
    (typeof out['value'] !== 'object' || out['value'] === null)
  )
    return out['value'];
  if (type === 'GeoProperty' && members.length === 1 && subs === 0) return out['value'];
  return out;
}

/** The language's string, else '@none', else the first; with the tag actually used. */
function pickLanguage(map: Record<string, string>, lang: string): { value: unknown; lang: string } {
  const wanted = lang.split(',').map((l) => l.trim().split(';')[0] ?? '');
  for (const w of wanted) {
    if (w in map) return { value: map[w], lang: w };
    const base = w.split('-')[0] ?? w;
    const near = Object.keys(map).find((k) => k.split('-')[0] === base);
    if (near !== undefined) return { value: map[near], lang: near };
  }
  if ('@none' in map) return { value: map['@none'], lang: '@none' };
  const first = Object.keys(map)[0] ?? '@none';
  return { value: map[first], lang: first };
}

/** The geometry of `geometryIri` for the GeoJSON representation (default instance), or null. */
export function geometryOf(e: EntityRecord, geometryIri: string): unknown {
  const instances = e.attrs[geometryIri];
  const inst = instances?.find((i) => i.datasetId === undefined) ?? instances?.[0];
  return inst?.type === 'GeoProperty' ? (inst.value ?? null) : null;
}

/** An entity as a GeoJSON Feature (§4.5.16): the rendered entity becomes the properties. */
export function toFeature(
  e: EntityRecord,
  rendered: Record<string, unknown>,
  geometryIri: string,
): Record<string, unknown> {
  const { id, ...properties } = rendered;
  return { id: id ?? e.id, type: 'Feature', geometry: geometryOf(e, geometryIri), properties };
}

/** The ids an entity's relationships point at (Relationship objects and ListRelationship items). */
export function relationshipTargets(e: EntityRecord): string[] {
  const out: string[] = [];
  const visit = (inst: Instance) => {
    if (inst.type === 'Relationship' && inst.object !== undefined)
      out.push(...(Array.isArray(inst.object) ? inst.object : [inst.object]));
    if (inst.type === 'ListRelationship')
      for (const item of inst.objectList ?? []) {
        const o = (item as { object?: unknown }).object;
        if (typeof o === 'string') out.push(o);
      }
  };
  for (const list of Object.values(e.attrs)) for (const inst of list) visit(inst);
  return out;
}
