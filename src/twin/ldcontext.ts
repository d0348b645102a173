/**
 * JSON-LD @context machinery of the NGSI-LD broker (ETSI GS CIM 009 v1.8 §5.5.7, §6.3.5, §6.3.6).
 *
 * The hot path never runs a general JSON-LD processor: a request's @context is resolved once into an
 * immutable `LdContext` whose `expand`/`compact` are memoised map lookups, and resolved contexts are
 * cached by the request's context value, so a repeated Link header costs one Map lookup.
 *
 * What we implement of JSON-LD 1.1 context processing is the part that names need: term definitions
 * (string or `{"@id", "@type", "@container", "@prefix"}`), `@vocab`, compact IRIs through prefix terms
 * (JSON-LD 1.1 prefix flag rules), `null` resets, remote contexts (nested, with loop detection and a
 * depth limit) and `@import` of one URL. Scoped contexts, `@reverse`, `@language`, `@protected` among
 * user contexts and value coercion are accepted and ignored: they do not change how names expand.
 *
 * The NGSI-LD core context (bundled, never fetched) is always processed last and its terms cannot be
 * overridden; a user `@vocab` is honoured for names no term defines (see `buildUserContext`).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { NgsiError } from './errors.ts';

/** The URL of the core context this broker implements; echoed in responses. */
export const CORE_CONTEXT_URL = 'https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld';
/** The core context's `@vocab`: where names no term defines expand to. */
export const NGSI_LD_DEFAULT_VOCAB = 'https://uri.etsi.org/ngsi-ld/default-context/';
/** The link relation of a JSON-LD context Link header (JSON-LD 1.1 §6.1). */
export const JSONLD_CONTEXT_REL = 'http://www.w3.org/ns/json-ld#context';

const CORE_URL_RE = /^https?:\/\/uri\.etsi\.org\/ngsi-ld\/v1\/ngsi-ld-core-context[^/?#]*\.jsonld$/;
const HOSTED_PATH_RE = /^\/ngsi-ld\/v1\/jsonldContexts\/([^/]+)$/;
const SCHEME_RE = /^[A-Za-z][A-Za-z0-9+.-]*:/;
const GEN_DELIMS = ':/?#[]@';
const KEYWORDS = new Set([
  '@base',
  '@container',
  '@context',
  '@direction',
  '@graph',
  '@id',
  '@import',
  '@included',
  '@index',
  '@json',
  '@language',
  '@list',
  '@nest',
  '@none',
  '@prefix',
  '@propagate',
  '@protected',
  '@reverse',
  '@set',
  '@type',
  '@value',
  '@version',
  '@vocab',
]);
/** Nesting limit of context URLs referencing context URLs. */
const MAX_DEPTH = 8;
const MAX_REDIRECTS = 5;
/** Memo entries an LdContext keeps for names no term defines before it starts over (bounds memory). */
const MEMO_LIMIT = 10_000;
const ACCEPT = 'application/ld+json, application/json;q=0.9';

type JsonObject = Record<string, unknown>;

/** What a term maps to, as `LdContext.definition` reports it. */
export interface TermDefinition {
  /** Expanded IRI, or a keyword (`@id`, `@type`) for keyword aliases. */
  readonly id: string;
  /** `@type` coercion: `@id`, `@vocab`, `@json` or an expanded datatype IRI. */
  readonly type?: string;
  readonly container?: readonly string[];
}

interface Def extends TermDefinition {
  /** May be used as the prefix of a compact IRI (JSON-LD 1.1 prefix flag). */
  readonly prefix: boolean;
  /** Position of the defining local context; core definitions have `Infinity`. */
  readonly order: number;
}

/** A resolved, immutable @context: user contexts then the NGSI-LD core context. */
export interface LdContext {
  /** Stable identity (hash of the sources and the resolved context content), for caching. */
  readonly key: string;
  /** The user context sources as given (URLs and inline objects), without core context URLs. */
  readonly sources: readonly (string | object)[];
  /** No user context: only the core context applies. */
  readonly isCoreOnly: boolean;
  /** The active `@vocab` (a user `@vocab` if given, else the core's default-context). */
  readonly vocab: string;
  /**
   * Attribute, type and VocabProperty names → expanded IRI: a term's IRI, a compact IRI through a prefix
   * term, an absolute IRI unchanged, else `@vocab` + name. A bound function (safe to pass around).
   */
  readonly expand: (term: string) => string;
  /** Expanded IRI → shortest name that `expand` maps back to it (`expand(compact(x)) === x`). Bound. */
  readonly compact: (iri: string) => string;
  /** The definition of a term, or undefined when the name is not a term. */
  definition(term: string): TermDefinition | undefined;
}

// ---------------------------------------------------------------------------------------------------
// Small helpers

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  const t = typeof v;
  return t === 'object' ? 'an object' : `a ${t}`;
}

/** JSON with object keys sorted, so equal values give equal strings whatever their key order. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (isObject(v)) {
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(',')}}`;
  }
  // Non-JSON values have no representation: serialise them as JSON.stringify does inside arrays.
  if (v === undefined || typeof v === 'function' || typeof v === 'symbol') return 'null';
  return JSON.stringify(v);
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

const hashOf = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 32);

/** Whether a URL names the NGSI-LD core context (any version): it resolves to the bundled copy. */
export function isCoreContextUrl(url: string): boolean {
  return CORE_URL_RE.test(url);
}

/** The id of a hosted context from a `/ngsi-ld/v1/jsonldContexts/<id>` URL on any host, else undefined. */
export function hostedIdOf(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  const m = HOSTED_PATH_RE.exec(u.pathname);
  if (m?.[1] === undefined) return undefined;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------
// Context processing (synchronous; remote contexts are already loaded)

interface ProcessState {
  terms: Map<string, Def>;
  vocab: string | undefined;
}

/**
 * Applies one local context object to `state` (JSON-LD 1.1 context processing, names only).
 * `fallback` (the core terms) resolves prefixes and terms a user context uses without defining them,
 * and `fallbackVocab` stands in for a missing user `@vocab` when a term's IRI is vocabulary-relative:
 * the core context is always active in NGSI-LD, even though it is processed last.
 */
function processLocal(
  state: ProcessState,
  local: JsonObject,
  order: number,
  fallback: ReadonlyMap<string, Def> | undefined,
  fallbackVocab: string,
  origin: string,
): void {
  const fail = (detail: string): NgsiError =>
    new NgsiError('InvalidRequest', `@context (${origin}): ${detail}`);

  if ('@version' in local && local['@version'] !== 1.1) throw fail('"@version" must be the number 1.1');
  for (const k of ['@protected', '@propagate']) {
    if (k in local && typeof local[k] !== 'boolean') throw fail(`"${k}" must be a boolean`);
  }
  for (const k of ['@language', '@direction', '@base']) {
    if (k in local && local[k] !== null && typeof local[k] !== 'string') {
      throw fail(`"${k}" must be a string or null, not ${describe(local[k])}`);
    }
  }

  const defining = new Map<string, boolean>();

  const lookup = (name: string, current: string | undefined): Def | undefined => {
    // A term may use another term of the same local context whatever their order (JSON-LD "defined" map).
    if (name !== current && Object.hasOwn(local, name) && !name.startsWith('@')) define(name);
    return state.terms.get(name) ?? fallback?.get(name);
  };

  /** IRI expansion of a value inside a term definition (vocab-relative); undefined for non-keyword @-forms. */
  const expandIri = (value: string, current: string | undefined): string | undefined => {
    if (value.startsWith('@')) return KEYWORDS.has(value) ? value : undefined;
    const colon = value.indexOf(':');
    if (colon > 0) {
      const prefix = value.slice(0, colon);
      const suffix = value.slice(colon + 1);
      if (prefix === '_' || suffix.startsWith('//')) return value;
      const p = prefix === current ? undefined : lookup(prefix, current);
      if (p?.prefix === true) return p.id + suffix;
      if (SCHEME_RE.test(value)) return value;
    }
    if (value !== current) {
      const t = lookup(value, current);
      if (t !== undefined) return t.id;
    }
    return (state.vocab ?? fallbackVocab) + value;
  };

  const buildDef = (term: string, value: unknown): Def | null => {
    if (value === null) return null;
    if (typeof value === 'string') {
      const id = expandIri(value, term);
      if (id === undefined) return null;
      const simplePrefix =
        !term.includes(':') &&
        !term.includes('/') &&
        !id.startsWith('@') &&
        (GEN_DELIMS.includes(id.slice(-1)) || id.startsWith('_:'));
      return { id, prefix: simplePrefix, order };
    }
    if (!isObject(value)) {
      throw fail(`term "${term}" must be defined by a string, an object or null, not ${describe(value)}`);
    }
    // Reverse properties cannot name an NGSI-LD attribute: the term is ignored (falls back to @vocab).
    if ('@reverse' in value) return null;
    let id: string | undefined;
    if ('@id' in value) {
      const raw = value['@id'];
      if (raw === null) return null;
      if (typeof raw !== 'string')
        throw fail(`"@id" of term "${term}" must be a string, not ${describe(raw)}`);
      id = expandIri(raw, term);
    } else if (term.includes(':')) {
      id = expandIri(term, term);
    } else {
      id = (state.vocab ?? fallbackVocab) + term;
    }
    if (id === undefined) return null;
    let type: string | undefined;
    if ('@type' in value) {
      const raw = value['@type'];
      if (typeof raw !== 'string')
        throw fail(`"@type" of term "${term}" must be a string, not ${describe(raw)}`);
      type = raw.startsWith('@') ? raw : (expandIri(raw, undefined) ?? raw);
    }
    let container: string[] | undefined;
    if ('@container' in value) {
      const raw = value['@container'];
      if (typeof raw === 'string') container = [raw];
      else if (Array.isArray(raw) && raw.every((c) => typeof c === 'string')) container = raw;
      else if (raw !== null) {
        throw fail(`"@container" of term "${term}" must be a string or an array of strings`);
      }
    }
    for (const k of ['@prefix', '@protected']) {
      if (k in value && typeof value[k] !== 'boolean')
        throw fail(`"${k}" of term "${term}" must be a boolean`);
    }
    const prefix = value['@prefix'] === true && !term.includes(':') && !term.includes('/');
    return {
      id,
      prefix,
      order,
      ...(type === undefined ? {} : { type }),
      ...(container === undefined ? {} : { container }),
    };
  };

  function define(term: string): void {
    const status = defining.get(term);
    if (status === true) return;
    if (status === false) throw fail(`cyclic IRI mapping involving term "${term}"`);
    if (term === '') throw fail('a term must not be the empty string');
    defining.set(term, false);
    const def = buildDef(term, local[term]);
    // `null` (or a definition we cannot honour) removes the term: the name falls back to @vocab.
    if (def === null) state.terms.delete(term);
    else state.terms.set(term, def);
    defining.set(term, true);
  }

  // @vocab first: term IRIs of the same local context are relative to it.
  if ('@vocab' in local) {
    const v = local['@vocab'];
    if (v === null) state.vocab = undefined;
    else if (typeof v === 'string') {
      if (v === '') throw fail('"@vocab" must not be empty (no document base to resolve it against)');
      const expanded = expandIri(v, undefined);
      if (expanded === undefined || expanded.startsWith('@')) throw fail(`"@vocab" "${v}" is not an IRI`);
      state.vocab = expanded;
    } else throw fail(`"@vocab" must be a string or null, not ${describe(v)}`);
  }
  for (const term of Object.keys(local)) {
    // Keywords are handled above or accepted and ignored (e.g. "@type": {"@container": "@set"}).
    if (!term.startsWith('@')) define(term);
  }
}

// ---------------------------------------------------------------------------------------------------
// The core context

function loadCore(): { document: JsonObject; terms: ReadonlyMap<string, Def>; vocab: string } {
  const text = readFileSync(new URL('./contexts/ngsi-ld-core-context-v1.8.json', import.meta.url), 'utf8');
  const document = deepFreeze(JSON.parse(text) as JsonObject);
  const ctx = document['@context'];
  if (!isObject(ctx)) throw new Error('bundled core context has no @context object');
  const state: ProcessState = { terms: new Map(), vocab: undefined };
  processLocal(state, ctx, Infinity, undefined, NGSI_LD_DEFAULT_VOCAB, CORE_CONTEXT_URL);
  return { document, terms: state.terms, vocab: state.vocab ?? NGSI_LD_DEFAULT_VOCAB };
}

const CORE = loadCore();

/** The bundled core context document (`{"@context": {…}}`), deep-frozen; for serving it. */
export const CORE_CONTEXT_DOCUMENT: Readonly<JsonObject> = CORE.document;

// ---------------------------------------------------------------------------------------------------
// LdContext construction

interface LocalItem {
  readonly obj: JsonObject;
  readonly origin: string;
}

function makeContext(options: {
  terms: ReadonlyMap<string, Def>;
  vocab: string;
  sources: readonly (string | object)[];
  key: string;
}): LdContext {
  const { terms, vocab, sources, key } = options;

  const ids = new Map<string, string>();
  for (const [t, d] of terms) ids.set(t, d.id);

  // Inverse map: the best term per IRI. Higher order wins (core = Infinity beats users; a later user
  // context beats an earlier one, as in JSON-LD), then the shorter term, then the lexicographically least.
  const reverse = new Map<string, { term: string; order: number }>();
  for (const [term, d] of terms) {
    const cur = reverse.get(d.id);
    if (
      cur === undefined ||
      d.order > cur.order ||
      (d.order === cur.order &&
        (term.length < cur.term.length || (term.length === cur.term.length && term < cur.term)))
    ) {
      reverse.set(d.id, { term, order: d.order });
    }
  }
  const prefixes: { term: string; id: string }[] = [];
  for (const [term, d] of terms) if (d.prefix) prefixes.push({ term, id: d.id });

  const expandUncached = (term: string): string => {
    if (term.startsWith('@')) return term;
    const colon = term.indexOf(':');
    if (colon > 0) {
      const prefix = term.slice(0, colon);
      const suffix = term.slice(colon + 1);
      if (prefix === '_' || suffix.startsWith('//')) return term;
      const p = terms.get(prefix);
      if (p?.prefix === true) return p.id + suffix;
      if (SCHEME_RE.test(term)) return term;
    }
    return vocab + term;
  };

  // One Map holds term IRIs and memoised computed expansions: a hit is a single lookup either way.
  let expandMemo = new Map(ids);
  const expand = (term: string): string => {
    const hit = expandMemo.get(term);
    if (hit !== undefined) return hit;
    const out = expandUncached(term);
    if (expandMemo.size >= ids.size + MEMO_LIMIT) expandMemo = new Map(ids);
    expandMemo.set(term, out);
    return out;
  };

  const compactUncached = (iri: string): string => {
    const exact = reverse.get(iri);
    if (exact !== undefined) return exact.term;
    // Vocabulary-relative before compact IRIs, as JSON-LD IRI compaction does: default-context names
    // come back as plain names, not as "ngsi-ld:default-context/…". Each candidate is checked by expand.
    if (iri.length > vocab.length && iri.startsWith(vocab)) {
      const rel = iri.slice(vocab.length);
      if (expand(rel) === iri) return rel;
    }
    let best: string | undefined;
    for (const p of prefixes) {
      if (iri.length > p.id.length && iri.startsWith(p.id)) {
        const candidate = `${p.term}:${iri.slice(p.id.length)}`;
        const better =
          best === undefined ||
          candidate.length < best.length ||
          (candidate.length === best.length && candidate < best);
        if (better && expand(candidate) === iri) best = candidate;
      }
    }
    return best ?? iri;
  };

  let compactMemo = new Map<string, string>();
  const compact = (iri: string): string => {
    const hit = compactMemo.get(iri);
    if (hit !== undefined) return hit;
    const out = compactUncached(iri);
    if (compactMemo.size >= MEMO_LIMIT) compactMemo = new Map();
    compactMemo.set(iri, out);
    return out;
  };

  const definition = (term: string): TermDefinition | undefined => {
    const d = terms.get(term);
    if (d === undefined) return undefined;
    return {
      id: d.id,
      ...(d.type === undefined ? {} : { type: d.type }),
      ...(d.container === undefined ? {} : { container: d.container }),
    };
  };

  return Object.freeze({
    key,
    sources,
    isCoreOnly: sources.length === 0,
    vocab,
    expand,
    compact,
    definition,
  });
}

/** The core-only context: a shared singleton (no request @context, or only core context URLs). */
export const CORE_LD_CONTEXT: LdContext = makeContext({
  terms: CORE.terms,
  vocab: CORE.vocab,
  sources: Object.freeze([]),
  key: hashOf(canonicalJson({ sources: [], contexts: [] })),
});

/**
 * User contexts then the core. NGSI-LD rule: the core context comes last and its terms cannot be
 * overridden, so a user term named like a core term (`location`, `value`, `type`, …) is dropped, for
 * expansion and compaction alike. A user `@vocab`, however, stays in force: the core's own `@vocab` only
 * applies when no user context sets one (JSON-LD proper would let the core's `@vocab` win).
 */
function buildUserContext(
  items: readonly (LocalItem | null)[],
  sources: readonly (string | object)[],
): LdContext {
  const state: ProcessState = { terms: new Map(), vocab: undefined };
  items.forEach((item, i) => {
    if (item === null) {
      state.terms.clear();
      state.vocab = undefined;
    } else processLocal(state, item.obj, i, CORE.terms, CORE.vocab, item.origin);
  });
  const terms = new Map<string, Def>();
  for (const [t, d] of state.terms) if (!CORE.terms.has(t)) terms.set(t, d);
  for (const [t, d] of CORE.terms) terms.set(t, d);
  const key = hashOf(canonicalJson({ sources, contexts: items.map((it) => (it === null ? null : it.obj)) }));
  return makeContext({ terms, vocab: state.vocab ?? CORE.vocab, sources, key });
}

/** The value to put in a response's `@context` (or Link header) for a context. */
export function contextForResponse(ctx: LdContext): string | (string | object)[] {
  return ctx.isCoreOnly ? CORE_CONTEXT_URL : [...ctx.sources, CORE_CONTEXT_URL];
}

// ---------------------------------------------------------------------------------------------------
// The resolver

/** The broker's own hosted contexts (`/ngsi-ld/v1/jsonldContexts/<id>`), consulted before any HTTP. */
export interface HostedContexts {
  /** The stored context (a `{"@context": …}` document or a bare context object), or undefined. */
  get(id: string): Promise<object | undefined>;
}

export interface ContextResolverOptions {
  /** Whole-fetch deadline (connect, redirects, body). Default 3000 ms. */
  timeoutMs?: number;
  /** Largest context document accepted. Default 1 MiB. */
  maxBytes?: number;
  /** How long a fetched context is used before it is fetched again. Default 24 h. */
  cacheTtlMs?: number;
  /** Bound of each cache (fetched documents, resolved contexts). Default 500. */
  maxEntries?: number;
  /** How long a failed fetch is remembered (at most 5 s). Default 5000 ms. */
  negativeTtlMs?: number;
  fetch?: typeof fetch;
  hosted?: HostedContexts;
  /** Clock (ms since epoch); tests inject one. */
  now?: () => number;
}

/** A fetched context as the `/jsonldContexts` API lists it (kind Cached). */
export interface CachedContextInfo {
  url: string;
  kind: 'Cached';
  /** ISO 8601 time of the fetch that produced the current copy. */
  createdAt: string;
  /** ISO 8601 time a request last used it. */
  lastUsage: string;
  numberOfHits: number;
  extraInfo: { bytes: number; fetchMs: number };
}

interface DocEntry {
  readonly url: string;
  readonly document: JsonObject;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly bytes: number;
  readonly fetchMs: number;
  lastUsage: number;
  /** Uses folded in from resolved contexts that were dropped. */
  hits: number;
}

interface ResolvedEntry {
  readonly ctx: LdContext;
  /** Dependency keys: fetched URLs (href) and `hosted:<id>`. */
  readonly deps: readonly string[];
  readonly expiresAt: number;
  hits: number;
  lastUsed: number;
}

interface Tracker {
  deps: Set<string>;
  expiresAt: number;
}

const notAvailable = (url: string, reason: string, cause?: unknown): NgsiError =>
  new NgsiError('LdContextNotAvailable', `${url}: ${reason}`, { cause });

/**
 * Resolves request @context values into `LdContext`s, fetching remote contexts (bounded, single-flight,
 * cached with a TTL, failures remembered briefly) and serving hosted and core contexts locally.
 */
export class ContextResolver {
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private readonly cacheTtlMs: number;
  private readonly maxEntries: number;
  private readonly negativeTtlMs: number;
  private readonly fetchImpl: typeof fetch;
  private readonly hosted: HostedContexts | undefined;
  private readonly now: () => number;

  private readonly resolved = new Map<string, ResolvedEntry>();
  /** Resolutions under way, and how many further requests wait on each (they are uses too). */
  private readonly resolving = new Map<string, Promise<LdContext>>();
  private readonly joiners = new Map<string, number>();
  private readonly docs = new Map<string, DocEntry>();
  private readonly fetching = new Map<string, Promise<DocEntry>>();
  private readonly failures = new Map<string, { error: unknown; until: number }>();

  constructor(options: ContextResolverOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 3000;
    this.maxBytes = options.maxBytes ?? 1024 * 1024;
    this.cacheTtlMs = options.cacheTtlMs ?? 24 * 3600 * 1000;
    this.maxEntries = Math.max(1, options.maxEntries ?? 500);
    this.negativeTtlMs = Math.min(options.negativeTtlMs ?? 5000, 5000);
    this.fetchImpl = options.fetch ?? fetch;
    this.hosted = options.hosted;
    this.now = options.now ?? Date.now;
  }

  /**
   * The context a request uses: `value` is a Link header URL, a body `@context` value (string, object,
   * array) or undefined (→ the core-only singleton). Throws InvalidRequest for malformed contexts and
   * LdContextNotAvailable for remote contexts that cannot be fetched; never hangs beyond `timeoutMs`
   * per remote fetch.
   */
  async resolve(value: unknown): Promise<LdContext> {
    if (value === undefined || value === null) return CORE_LD_CONTEXT;
    // Strings (Link header URLs, the common case) key the cache as they are; other values canonically.
    const key = typeof value === 'string' ? `s${value}` : `j${canonicalJson(value)}`;
    const hit = this.resolved.get(key);
    if (hit !== undefined) {
      const now = this.now();
      if (hit.expiresAt > now) {
        hit.hits++;
        hit.lastUsed = now;
        return hit.ctx;
      }
    }
    const pending = this.resolving.get(key);
    if (pending !== undefined) {
      this.joiners.set(key, (this.joiners.get(key) ?? 0) + 1);
      return pending;
    }
    const p = this.build(value, key).finally(() => {
      this.resolving.delete(key);
      this.joiners.delete(key);
    });
    this.resolving.set(key, p);
    return p;
  }

  /** The fetched (kind Cached) contexts, for `GET /jsonldContexts`. */
  cached(): CachedContextInfo[] {
    const usage = new Map<string, { hits: number; last: number }>();
    for (const e of this.resolved.values()) {
      for (const dep of e.deps) {
        const u = usage.get(dep);
        if (u === undefined) usage.set(dep, { hits: e.hits, last: e.lastUsed });
        else {
          u.hits += e.hits;
          u.last = Math.max(u.last, e.lastUsed);
        }
      }
    }
    return [...this.docs.values()].map((d) => {
      const u = usage.get(d.url);
      return {
        url: d.url,
        kind: 'Cached' as const,
        createdAt: new Date(d.createdAt).toISOString(),
        lastUsage: new Date(Math.max(d.lastUsage, u?.last ?? 0)).toISOString(),
        numberOfHits: d.hits + (u?.hits ?? 0),
        extraInfo: { bytes: d.bytes, fetchMs: d.fetchMs },
      };
    });
  }

  /** The cached document (`{"@context": …}`) fetched from `url`, or undefined. */
  cachedDocument(url: string): object | undefined {
    return this.docs.get(normalizeUrl(url))?.document;
  }

  /** Drops a fetched context (and the resolved contexts built on it); false if it was not cached. */
  evict(url: string): boolean {
    const href = normalizeUrl(url);
    this.failures.delete(href);
    this.invalidate(href);
    return this.docs.delete(href);
  }

  /** Fetches `url` again now; on failure the old copy stays and LdContextNotAvailable is thrown. */
  async reload(url: string): Promise<void> {
    const href = normalizeUrl(url);
    const fetched = await this.fetchDocument(href);
    this.storeDoc(href, fetched);
    this.failures.delete(href);
    this.invalidate(href);
  }

  /**
   * Drops resolved contexts that depended on `url` (a fetched URL or a hosted context URL), or all of
   * them without an argument, so a reload, an eviction or a hosted context change takes effect.
   */
  invalidate(url?: string): void {
    if (url === undefined) {
      for (const e of this.resolved.values()) this.foldHits(e);
      this.resolved.clear();
      return;
    }
    const keys = new Set([normalizeUrl(url)]);
    const id = hostedIdOf(url);
    if (id !== undefined) keys.add(`hosted:${id}`);
    for (const [k, e] of this.resolved) {
      if (e.deps.some((d) => keys.has(d))) {
        this.foldHits(e);
        this.resolved.delete(k);
      }
    }
  }

  private async build(value: unknown, key: string): Promise<LdContext> {
    const sources = normalizeSources(value);
    if (sources.length === 0) {
      this.remember(key, CORE_LD_CONTEXT, { deps: new Set(), expiresAt: Infinity });
      return CORE_LD_CONTEXT;
    }
    const items: (LocalItem | null)[] = [];
    const track: Tracker = { deps: new Set(), expiresAt: Infinity };
    await this.flatten(value, undefined, [], items, track, true);
    const ctx = buildUserContext(items, sources);
    // Requests joining after this point find the cache entry instead.
    this.remember(key, ctx, track);
    return ctx;
  }

  private remember(key: string, ctx: LdContext, track: Tracker): void {
    const hits = 1 + (this.joiners.get(key) ?? 0);
    const replaced = this.resolved.get(key);
    if (replaced !== undefined) this.foldHits(replaced); // an expired entry being rebuilt
    if (this.resolved.size >= this.maxEntries && !this.resolved.has(key)) {
      // Least recently used goes; scanning is fine at this size and keeps hits to one Map lookup.
      let victim: string | undefined;
      let oldest = Infinity;
      for (const [k, e] of this.resolved) {
        if (e.lastUsed < oldest) {
          oldest = e.lastUsed;
          victim = k;
        }
      }
      const v = victim === undefined ? undefined : this.resolved.get(victim);
      if (victim !== undefined && v !== undefined) {
        this.foldHits(v);
        this.resolved.delete(victim);
      }
    }
    const now = this.now();
    this.resolved.set(key, { ctx, deps: [...track.deps], expiresAt: track.expiresAt, hits, lastUsed: now });
  }

  /** Keeps the usage of a dropped resolved context on the documents it used. */
  private foldHits(e: ResolvedEntry): void {
    for (const dep of e.deps) {
      const d = this.docs.get(dep);
      if (d !== undefined) {
        d.hits += e.hits;
        d.lastUsage = Math.max(d.lastUsage, e.lastUsed);
      }
    }
  }

  /**
   * Turns a context value into the ordered list of local context objects (`null` = reset), loading
   * remote contexts. `chain` holds the URLs being resolved above this point, for loop detection.
   */
  private async flatten(
    value: unknown,
    base: string | undefined,
    chain: readonly string[],
    out: (LocalItem | null)[],
    track: Tracker,
    arrayAllowed: boolean,
  ): Promise<void> {
    const where = base === undefined ? '' : ` in ${base}`;
    if (value === null) {
      out.push(null);
      return;
    }
    if (typeof value === 'string') {
      const url = absoluteUrl(value, base);
      if (isCoreContextUrl(url)) return; // the core is always appended last anyway
      const doc = await this.loadRemote(url, chain, track);
      await this.flatten(doc['@context'], url, [...chain, url], out, track, true);
      return;
    }
    if (Array.isArray(value)) {
      if (!arrayAllowed) throw new NgsiError('InvalidRequest', `@context${where}: arrays must not be nested`);
      for (const v of value) await this.flatten(v, base, chain, out, track, false);
      return;
    }
    if (isObject(value)) {
      if ('@context' in value) {
        // A wrapped document ({"@context": …}) given inline.
        await this.flatten(value['@context'], base, chain, out, track, true);
        return;
      }
      let obj = value;
      if ('@import' in value) {
        const imp = value['@import'];
        if (typeof imp !== 'string') {
          throw new NgsiError('InvalidRequest', `@context${where}: "@import" must be a URL string`);
        }
        const url = absoluteUrl(imp, base);
        const { '@import': _ignored, ...rest } = value;
        if (!isCoreContextUrl(url)) {
          const doc = await this.loadRemote(url, chain, track);
          const imported = doc['@context'];
          if (!isObject(imported)) {
            throw new NgsiError(
              'InvalidRequest',
              `@context: "@import"-ed ${url} must hold a single context object`,
            );
          }
          if ('@import' in imported) {
            throw new NgsiError(
              'InvalidRequest',
              `@context: "@import"-ed ${url} must not use "@import" itself`,
            );
          }
          obj = { ...imported, ...rest };
        } else obj = rest;
      }
      out.push({ obj, origin: base ?? 'inline' });
      return;
    }
    throw new NgsiError(
      'InvalidRequest',
      `@context${where} must be a URL string, an object, an array or null, not ${describe(value)}`,
    );
  }

  /** A remote context document (hosted or fetched), with loop and depth checks. */
  private async loadRemote(url: string, chain: readonly string[], track: Tracker): Promise<JsonObject> {
    if (chain.includes(url)) {
      throw new NgsiError('InvalidRequest', `@context loop: ${[...chain, url].join(' → ')}`);
    }
    if (chain.length >= MAX_DEPTH) {
      throw new NgsiError('InvalidRequest', `@context URLs nest deeper than ${MAX_DEPTH} levels (at ${url})`);
    }
    const id = this.hosted === undefined ? undefined : hostedIdOf(url);
    if (this.hosted !== undefined && id !== undefined) {
      const stored = await this.hosted.get(id);
      if (stored === undefined) throw notAvailable(url, `no hosted @context with id "${id}"`);
      track.deps.add(`hosted:${id}`);
      return isObject(stored) && '@context' in stored ? stored : { '@context': stored };
    }
    const entry = await this.document(url);
    track.deps.add(url);
    const now = this.now();
    entry.lastUsage = now;
    // A stale copy (served after a failed refresh) is retried once the failure is forgotten.
    const usableUntil = entry.expiresAt > now ? entry.expiresAt : now + this.negativeTtlMs;
    track.expiresAt = Math.min(track.expiresAt, usableUntil);
    return entry.document;
  }

  /** A fresh cached copy, else a fetch (shared); a stale copy is served when the refresh fails. */
  private async document(url: string): Promise<DocEntry> {
    const now = this.now();
    const entry = this.docs.get(url);
    if (entry !== undefined && entry.expiresAt > now) return entry;
    const failure = this.failures.get(url);
    if (failure !== undefined && failure.until > now) {
      if (entry !== undefined) return entry;
      throw failure.error;
    }
    try {
      return await this.fetchShared(url);
    } catch (e) {
      if (entry !== undefined) return entry;
      throw e;
    }
  }

  private fetchShared(url: string): Promise<DocEntry> {
    const pending = this.fetching.get(url);
    if (pending !== undefined) return pending;
    const p = this.fetchDocument(url)
      .then(
        (fetched) => {
          this.failures.delete(url);
          return this.storeDoc(url, fetched);
        },
        (e: unknown) => {
          this.rememberFailure(url, e);
          throw e;
        },
      )
      .finally(() => this.fetching.delete(url));
    this.fetching.set(url, p);
    return p;
  }

  private rememberFailure(url: string, error: unknown): void {
    const now = this.now();
    if (this.failures.size >= this.maxEntries) {
      for (const [k, f] of this.failures) if (f.until <= now) this.failures.delete(k);
      // Still full: forget the oldest (Map order is insertion order).
      const first = this.failures.keys().next();
      if (this.failures.size >= this.maxEntries && first.done !== true) this.failures.delete(first.value);
    }
    this.failures.set(url, { error, until: now + this.negativeTtlMs });
  }

  private storeDoc(url: string, fetched: { document: JsonObject; bytes: number; fetchMs: number }): DocEntry {
    const now = this.now();
    const previous = this.docs.get(url);
    if (previous === undefined && this.docs.size >= this.maxEntries) {
      let victim: DocEntry | undefined;
      for (const d of this.docs.values())
        if (victim === undefined || d.lastUsage < victim.lastUsage) victim = d;
      if (victim !== undefined) this.evict(victim.url);
    }
    const entry: DocEntry = {
      url,
      document: deepFreeze(fetched.document),
      createdAt: now,
      expiresAt: now + this.cacheTtlMs,
      bytes: fetched.bytes,
      fetchMs: fetched.fetchMs,
      lastUsage: previous?.lastUsage ?? now,
      hits: previous?.hits ?? 0,
    };
    this.docs.set(url, entry);
    return entry;
  }

  /**
   * One HTTP(S) fetch of a context document: manual redirects (at most 5), one deadline for the whole
   * exchange, body streamed and cut at maxBytes. Every failure is LdContextNotAvailable.
   */
  private async fetchDocument(
    url: string,
  ): Promise<{ document: JsonObject; bytes: number; fetchMs: number }> {
    const started = performance.now();
    const signal = AbortSignal.timeout(this.timeoutMs);
    // Belt and braces: even a fetch implementation that ignores the signal cannot make us wait longer.
    let onAbort: (() => void) | undefined;
    const deadline = new Promise<never>((_, reject) => {
      onAbort = () => {
        reject(notAvailable(url, `no complete answer within ${this.timeoutMs} ms`));
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const { document, bytes } = await Promise.race([this.exchange(url, signal), deadline]);
      return { document, bytes, fetchMs: Math.round(performance.now() - started) };
    } finally {
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
    }
  }

  private async exchange(url: string, signal: AbortSignal): Promise<{ document: JsonObject; bytes: number }> {
    const failed = (e: unknown): NgsiError => {
      if (e instanceof NgsiError) return e;
      if (signal.aborted) return notAvailable(url, `no complete answer within ${this.timeoutMs} ms`, e);
      return notAvailable(url, describeFetchError(e), e);
    };
    let current = url;
    for (let hop = 0; ; hop++) {
      const scheme = new URL(current).protocol;
      if (scheme !== 'http:' && scheme !== 'https:') {
        throw notAvailable(url, `only http and https context URLs can be fetched (${current})`);
      }
      let res: Response;
      try {
        res = await this.fetchImpl(current, { signal, redirect: 'manual', headers: { accept: ACCEPT } });
      } catch (e) {
        throw failed(e);
      }
      if ([301, 302, 303, 307, 308].includes(res.status)) {
        discard(res);
        const location = res.headers.get('location');
        if (location === null) throw notAvailable(url, `HTTP ${res.status} without a Location header`);
        if (hop >= MAX_REDIRECTS) throw notAvailable(url, `more than ${MAX_REDIRECTS} redirects`);
        current = new URL(location, current).href;
        continue;
      }
      if (res.status < 200 || res.status > 299) {
        discard(res);
        throw notAvailable(url, `HTTP ${res.status}${current === url ? '' : ` from ${current}`}`);
      }
      const declared = Number(res.headers.get('content-length') ?? NaN);
      if (declared > this.maxBytes) {
        discard(res);
        throw notAvailable(url, `larger than ${this.maxBytes} bytes (Content-Length ${declared})`);
      }
      let bytes: Uint8Array;
      try {
        bytes = await readLimited(res, this.maxBytes, url);
      } catch (e) {
        throw failed(e);
      }
      let document: unknown;
      try {
        document = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
      } catch {
        throw notAvailable(url, 'not a JSON document');
      }
      if (!isObject(document) || !('@context' in document)) {
        throw notAvailable(url, 'the document has no @context member');
      }
      return { document, bytes: bytes.byteLength };
    }
  }
}

/** A resolver for one platform start. */
export function createContextResolver(options: ContextResolverOptions = {}): ContextResolver {
  return new ContextResolver(options);
}

function discard(res: Response): void {
  res.body?.cancel().catch(() => undefined);
}

async function readLimited(res: Response, maxBytes: number, url: string): Promise<Uint8Array> {
  if (res.body === null) return new Uint8Array(0);
  // The DOM-less Node typings leave chunk types open; fetch bodies are byte streams.
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      reader.cancel().catch(() => undefined);
      throw notAvailable(url, `larger than ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

function describeFetchError(e: unknown): string {
  const cause = e instanceof Error ? e.cause : undefined;
  const code = isObject(cause) && typeof cause.code === 'string' ? cause.code : undefined;
  if (code !== undefined) return `connection failed (${code})`;
  return e instanceof Error ? `fetch failed (${e.message})` : 'fetch failed';
}

function normalizeUrl(url: string): string {
  try {
    return new URL(url).href;
  } catch {
    return url;
  }
}

function absoluteUrl(ref: string, base: string | undefined): string {
  try {
    return new URL(ref, base).href;
  } catch {
    throw new NgsiError(
      'InvalidRequest',
      base === undefined
        ? `@context URL "${ref}" is not an absolute URL`
        : `@context URL "${ref}" in ${base} is not a valid URL`,
    );
  }
}

/** The user sources of a context value as given, minus core context URLs, deep-frozen copies. */
function normalizeSources(value: unknown): readonly (string | object)[] {
  const list = Array.isArray(value) ? (value as unknown[]) : [value];
  const out: (string | object)[] = [];
  for (const v of list) {
    if (typeof v === 'string') {
      if (!isCoreContextUrl(v)) out.push(v);
    } else if (typeof v === 'object') {
      // Includes null (a reset), which JSON-LD allows in a response @context too.
      out.push(deepFreeze(JSON.parse(JSON.stringify(v)) as object));
    } else {
      throw new NgsiError(
        'InvalidRequest',
        `@context must be a URL string, an object, an array or null, not ${describe(v)}`,
      );
    }
  }
  return Object.freeze(out);
}

// ---------------------------------------------------------------------------------------------------
// Request helpers (§6.3.5, §6.3.6)

/** A Link header value naming `url` as the JSON-LD context. */
export function linkHeaderFor(url: string): string {
  return `<${url}>; rel="${JSONLD_CONTEXT_REL}"; type="application/ld+json"`;
}

interface ParsedLink {
  uri: string;
  params: Map<string, string>;
}

/** RFC 8288 link-values of one header line; throws BadRequestData on syntax errors. */
function parseLinks(s: string): ParsedLink[] {
  const bad = (why: string): NgsiError => new NgsiError('BadRequestData', `malformed Link header: ${why}`);
  const isWs = (c: string | undefined): boolean => c === ' ' || c === '\t';
  const out: ParsedLink[] = [];
  const n = s.length;
  let i = 0;
  const skipWs = (): void => {
    while (i < n && isWs(s[i])) i++;
  };
  for (;;) {
    skipWs();
    while (i < n && s[i] === ',') {
      i++;
      skipWs();
    }
    if (i >= n) break;
    if (s[i] !== '<') throw bad(`expected "<" at position ${i}`);
    const end = s.indexOf('>', i + 1);
    if (end < 0) throw bad('unterminated "<"');
    const uri = s.slice(i + 1, end).trim();
    i = end + 1;
    const params = new Map<string, string>();
    for (;;) {
      skipWs();
      if (i >= n || s[i] === ',') break;
      if (s[i] !== ';') throw bad(`expected ";" or "," at position ${i}`);
      i++;
      skipWs();
      const start = i;
      while (i < n && !'=;,'.includes(s[i] ?? '') && !isWs(s[i])) i++;
      const name = s.slice(start, i).toLowerCase();
      if (name === '') throw bad(`empty parameter name at position ${start}`);
      skipWs();
      let value = '';
      if (s[i] === '=') {
        i++;
        skipWs();
        if (s[i] === '"') {
          i++;
          for (;;) {
            if (i >= n) throw bad('unterminated quoted string');
            const c = s[i++];
            if (c === '\\') {
              if (i >= n) throw bad('unterminated quoted string');
              value += s[i++] ?? '';
            } else if (c === '"') break;
            else value += c ?? '';
          }
        } else {
          const vs = i;
          while (i < n && !';,'.includes(s[i] ?? '') && !isWs(s[i])) i++;
          value = s.slice(vs, i);
          if (value === '') throw bad(`empty value of parameter "${name}"`);
        }
      }
      // RFC 8288: occurrences after the first of a parameter are ignored.
      if (!params.has(name)) params.set(name, value);
    }
    out.push({ uri, params });
  }
  return out;
}

/**
 * The JSON-LD context URL of a request's Link header(s) (rel quoted or not, type optional), or
 * undefined when there is none. Two context links, a malformed header or a non-absolute URL →
 * BadRequestData.
 */
export function parseLinkHeader(header: string | readonly string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const lines = typeof header === 'string' ? [header] : header;
  const found: string[] = [];
  for (const line of lines) {
    for (const link of parseLinks(line)) {
      const rel = link.params.get('rel');
      if (rel !== undefined && rel.toLowerCase().split(/\s+/).includes(JSONLD_CONTEXT_REL))
        found.push(link.uri);
    }
  }
  if (found.length > 1) {
    throw new NgsiError('BadRequestData', 'more than one JSON-LD @context Link header was given');
  }
  const uri = found[0];
  if (uri === undefined) return undefined;
  try {
    new URL(uri);
  } catch {
    throw new NgsiError(
      'BadRequestData',
      `the JSON-LD @context Link header URL "${uri}" is not an absolute URL`,
    );
  }
  return uri;
}

export interface RequestContextInput {
  method: string;
  /** The request's Content-Type (parameters allowed); json rules unless it is application/ld+json. */
  contentType?: string | undefined;
  linkHeader?: string | readonly string[] | undefined;
  /** The parsed body; undefined when the request has none. */
  body?: unknown;
}

/**
 * Which @context value a request uses (pass it to `ContextResolver.resolve`); undefined = core only.
 * - no body (GET, DELETE, …): the Link header's context;
 * - `application/json` (and other JSON types, e.g. merge-patch+json): the Link header's context; a
 *   body `@context` → BadRequestData;
 * - `application/ld+json`: the body's `@context` (missing → BadRequestData); a context Link header as
 *   well → BadRequestData.
 * For an array body (batch operations) the rule applies per element and the result is an ARRAY with one
 * context value per element, in order (for json bodies every element gets the Link header's value).
 */
export function requestContextValue(input: RequestContextInput): unknown {
  const link = parseLinkHeader(input.linkHeader);
  const method = input.method.toUpperCase();
  if (input.body === undefined || method === 'GET' || method === 'DELETE' || method === 'HEAD') return link;
  const media = (input.contentType ?? 'application/json').split(';')[0]?.trim().toLowerCase();
  const ld = media === 'application/ld+json';
  if (ld && link !== undefined) {
    throw new NgsiError(
      'BadRequestData',
      'an application/ld+json request must carry its @context in the body, not in a Link header',
    );
  }
  const one = (el: unknown, where: string): unknown => {
    if (ld) {
      if (!isObject(el) || !('@context' in el)) {
        throw new NgsiError('BadRequestData', `an application/ld+json body must carry @context${where}`);
      }
      return el['@context'];
    }
    if (isObject(el) && '@context' in el) {
      throw new NgsiError(
        'BadRequestData',
        `an application/json body must not carry @context${where}: send it in a Link header or use application/ld+json`,
      );
    }
    return link;
  };
  return Array.isArray(input.body)
    ? input.body.map((el, i) => one(el, ` (element ${i})`))
    : one(input.body, '');
}
