/**
 * @context management (ETSI GS CIM 009 v1.8 §5.13 "JSON-LD @context"): contexts the broker hosts
 * (kind Hosted, stored in twin.jsonld_contexts so every replica serves them) and contexts it fetched
 * and cached (kind Cached, per process). Hosted contexts are served at
 * `/ngsi-ld/v1/jsonldContexts/{id}` and resolved locally when a request's Link header names them.
 */
import { randomUUID } from 'node:crypto';
import { recordAudit, type CallContext } from '../trust/index.ts';
import type { Database } from '../kernel/index.ts';
import { clip, isPlainObject } from './entity.model.ts';
import {
  deleteHostedContext,
  findHostedContext,
  insertHostedContext,
  listHostedContexts,
} from './entity.store.ts';
import { NgsiError } from './errors.ts';
import type { ContextResolver } from './ldcontext.ts';

export interface ContextInfo {
  URL: string;
  localId: string;
  kind: 'Hosted' | 'Cached';
  createdAt: string;
  lastUsage?: string;
  numberOfHits?: number;
  extraInfo?: Record<string, unknown>;
}

const MAX_HOSTED_BYTES = 1024 * 1024;

/** Stores a context document (`{"@context": …}`) and returns its id; the document is checked by resolving it. */
export async function addContext(
  database: Database,
  resolver: ContextResolver,
  call: CallContext,
  body: unknown,
): Promise<string> {
  if (!isPlainObject(body) || !('@context' in body))
    throw new NgsiError('BadRequestData', 'The body must be a JSON object with an @context member');
  const ctx = body['@context'];
  if (!isPlainObject(ctx) && !Array.isArray(ctx) && typeof ctx !== 'string')
    throw new NgsiError('BadRequestData', '@context must be an object, an array or a URL');
  if (Buffer.byteLength(JSON.stringify(body)) > MAX_HOSTED_BYTES)
    throw new NgsiError('BadRequestData', 'The context is larger than 1 MiB');
  // Resolving it proves it is a usable context (and fetches what it references).
  await resolver.resolve(ctx);
  const id = randomUUID();
  await database.transact(async (trx) => {
    await insertHostedContext(trx, id, { '@context': ctx });
    await recordAudit(trx, call, {
      action: 'twin.context.add',
      resourceType: 'jsonld-context',
      resourceId: id,
    });
  });
  return id;
}

/** Hosted and cached contexts; `kind` filters. */
export async function listContexts(
  database: Database,
  resolver: ContextResolver,
  baseUrl: string,
  kind: string | undefined,
): Promise<ContextInfo[]> {
  if (kind !== undefined && !['Hosted', 'Cached', 'ImplicitlyCreated'].includes(kind))
    throw new NgsiError('BadRequestData', 'kind: Hosted, Cached or ImplicitlyCreated');
  const out: ContextInfo[] = [];
  if (kind === undefined || kind === 'Hosted')
    for (const h of await listHostedContexts(database.db))
      out.push({
        URL: `${baseUrl}/${encodeURIComponent(h.id)}`,
        localId: h.id,
        kind: 'Hosted',
        createdAt: h.createdAt,
      });
  if (kind === undefined || kind === 'Cached')
    for (const c of resolver.cached())
      out.push({
        URL: c.url,
        localId: encodeURIComponent(c.url),
        kind: 'Cached',
        createdAt: c.createdAt,
        lastUsage: c.lastUsage,
        numberOfHits: c.numberOfHits,
        extraInfo: c.extraInfo,
      });
  return out;
}

/** A hosted context by id, or a cached one by its URL; ResourceNotFound otherwise. */
export async function getContext(
  database: Database,
  resolver: ContextResolver,
  baseUrl: string,
  id: string,
): Promise<{ document: object; info: ContextInfo }> {
  const hosted = await findHostedContext(database.db, id);
  if (hosted)
    return {
      document: hosted.body,
      info: {
        URL: `${baseUrl}/${encodeURIComponent(id)}`,
        localId: id,
        kind: 'Hosted',
        createdAt: hosted.createdAt,
      },
    };
  const cached = resolver.cachedDocument(id);
  const info = resolver.cached().find((c) => c.url === id);
  if (cached && info)
    return {
      document: cached,
      info: {
        URL: info.url,
        localId: encodeURIComponent(info.url),
        kind: 'Cached',
        createdAt: info.createdAt,
        lastUsage: info.lastUsage,
        numberOfHits: info.numberOfHits,
        extraInfo: info.extraInfo,
      },
    };
  throw new NgsiError('ResourceNotFound', `No @context ${clip(id)}`);
}

/** Deletes a hosted context, evicts a cached one, or (`reload`) fetches a cached one again. */
export async function deleteContext(
  database: Database,
  resolver: ContextResolver,
  call: CallContext,
  baseUrl: string,
  id: string,
  reload: boolean,
): Promise<void> {
  const hosted = await findHostedContext(database.db, id);
  if (hosted) {
    if (reload) throw new NgsiError('BadRequestData', 'reload applies to cached contexts, not hosted ones');
    await database.transact(async (trx) => {
      await deleteHostedContext(trx, id);
      await recordAudit(trx, call, {
        action: 'twin.context.delete',
        resourceType: 'jsonld-context',
        resourceId: id,
      });
    });
    resolver.invalidate(`${baseUrl}/${encodeURIComponent(id)}`);
    return;
  }
  if (!resolver.cachedDocument(id)) throw new NgsiError('ResourceNotFound', `No @context ${clip(id)}`);
  if (reload) await resolver.reload(id);
  else resolver.evict(id);
}
