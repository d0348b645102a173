/**
 * HTTP plumbing shared by the NGSI-LD routes (entities, temporal, subscriptions, registrations):
 * the tenant header, content negotiation, the @context rules of §6.3.5 for a request, sending a
 * body with its @context, strict JSON parsing and errors as NGSI-LD ProblemDetails.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { toAppError } from '../kernel/index.ts';
import { callContext, type TrustRuntime } from '../trust/index.ts';
import { isPlainObject, type Terms } from './entity.model.ts';
import type { TwinCall, TwinRuntime } from './entity.service.ts';
import { NgsiError, NGSI_ERROR_BASE, type NgsiErrorType } from './errors.ts';
import {
  CORE_CONTEXT_URL,
  linkHeaderFor,
  requestContextValue,
  type ContextResolver,
  type LdContext,
} from './ldcontext.ts';

export const NGSI_PREFIX = '/ngsi-ld/v1';

/** Builds a route's OpenAPI schema from its summary (and params, querystring…), tagged ngsi-ld. */
export type RouteDoc = (summary: string, extra?: Record<string, unknown>) => Record<string, unknown>;

export interface NgsiRuntime extends TwinRuntime {
  trust: TrustRuntime;
  contexts: ContextResolver;
  bodyLimitBytes: number;
  /** The SSRF guard's setting for notification endpoints (TWIN_NOTIFY_PRIVATE). */
  notifyPrivate: boolean;
}

export const TENANT = /^[A-Za-z0-9_-]{1,64}$/;
export const JSON_TYPE = 'application/json';
export const LD_TYPE = 'application/ld+json';
export const GEO_TYPE = 'application/geo+json';

/** The `NGSILD-Tenant` header ('' = the default tenant). */
export function tenantOf(request: FastifyRequest): string {
  const raw = request.headers['ngsild-tenant'];
  if (raw === undefined) return '';
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined || value === '') return '';
  if (!TENANT.test(value))
    throw new NgsiError('BadRequestData', 'NGSILD-Tenant: 1 to 64 letters, digits, "_" or "-"');
  return value;
}

/** The media type of the request body, without parameters. */
export function contentTypeOf(request: FastifyRequest): string | undefined {
  const raw = request.headers['content-type'];
  return raw?.split(';')[0]?.trim().toLowerCase();
}

/** Which representation the client accepts: JSON, JSON-LD or (where allowed) GeoJSON; 406 otherwise. */
export function negotiate(request: FastifyRequest, options: { geo: boolean }): string {
  const raw = request.headers.accept;
  if (raw === undefined || raw.trim() === '') return JSON_TYPE;
  const offers = raw
    .split(',')
    .map((part) => {
      const [type = '', ...params] = part.split(';').map((s) => s.trim().toLowerCase());
      const qParam = params.find((p) => p.startsWith('q='));
      return { type, q: qParam ? Number(qParam.slice(2)) : 1 };
    })
    .filter((o) => o.q > 0)
    .sort((a, b) => b.q - a.q);
  for (const o of offers) {
    if (o.type === JSON_TYPE || o.type === LD_TYPE) return o.type;
    if (o.type === GEO_TYPE && options.geo) return GEO_TYPE;
    if (o.type === '*/*' || o.type === 'application/*') return JSON_TYPE;
  }
  throw new NgsiError(
    'NotAcceptable',
    `Accept: this endpoint answers ${options.geo ? 'application/json, application/ld+json or application/geo+json' : 'application/json or application/ld+json'}`,
  );
}

/** Resolves who calls, in which tenant, with which @context (the §6.3.5 rules). */
export async function twinCall(
  rt: NgsiRuntime,
  request: FastifyRequest,
): Promise<TwinCall & { context: LdContext; memberTerms?: Terms[] }> {
  const tenant = tenantOf(request);
  const value = requestContextValue({
    method: request.method,
    contentType: contentTypeOf(request),
    linkHeader: request.headers.link,
    body: request.body,
  });
  const call = callContext(rt.trust, request);
  if (Array.isArray(request.body) && Array.isArray(value)) {
    // A JSON-LD batch: every member carries its own @context (resolved once per distinct value).
    const members = await Promise.all((value as unknown[]).map((v) => rt.contexts.resolve(v)));
    const context = members[0] ?? (await rt.contexts.resolve(undefined));
    return { call: await call, tenant, terms: context, context, memberTerms: members };
  }
  const [resolvedCall, context] = await Promise.all([call, rt.contexts.resolve(value)]);
  return { call: resolvedCall, tenant, terms: context, context };
}

/** Strips `@context` from a JSON-LD body (it was resolved already). */
export function withoutContext(body: unknown): unknown {
  if (isPlainObject(body) && '@context' in body) {
    const { ['@context']: _ctx, ...rest } = body;
    return rest;
  }
  return body;
}

/** The context to send back: the request's own sources, or the core context. */
export function responseContext(context: LdContext): unknown {
  if (context.isCoreOnly) return CORE_CONTEXT_URL;
  const sources = context.sources;
  return sources.length === 1 ? sources[0] : sources;
}

/** Sends a JSON body in the negotiated representation, with @context in the body or a Link header. */
export function sendBody(
  reply: FastifyReply,
  media: string,
  context: LdContext,
  body: unknown,
  options: { links?: string[] } = {},
): FastifyReply {
  const links = options.links ?? [];
  if (media === LD_TYPE) {
    const ctx = responseContext(context);
    const withCtx = Array.isArray(body)
      ? body.map((b: unknown) => (isPlainObject(b) ? { '@context': ctx, ...b } : b))
      : isPlainObject(body)
        ? { '@context': ctx, ...body }
        : body;
    if (links.length > 0) void reply.header('link', links.join(', '));
    return reply.type(LD_TYPE).send(JSON.stringify(withCtx));
  }
  // Pagination links join the context link in one header (RFC 8288 allows a list).
  void reply.header('link', [linkHeaderFor(linkUrl(context)), ...links].join(', '));
  return reply.type(media === GEO_TYPE ? GEO_TYPE : JSON_TYPE).send(JSON.stringify(body));
}

/** The URL for a Link header: the first user context that is a URL, else the core context. */
export function linkUrl(context: LdContext): string {
  if (context.isCoreOnly) return CORE_CONTEXT_URL;
  const url = context.sources.find((s): s is string => typeof s === 'string');
  return url ?? CORE_CONTEXT_URL;
}

/** Path parameters (their schemas are in each route's `params`). */
export const params = (request: FastifyRequest) =>
  request.params as { entityId: string; attrId: string; type: string };

/** `?a=b&c=d` with one parameter replaced (for pagination Link headers). */
export function pageUrl(request: FastifyRequest, changes: Record<string, string | undefined>): string {
  const url = new URL(request.url, 'http://x');
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) url.searchParams.delete(k);
    else url.searchParams.set(k, v);
  }
  return `${url.pathname}${url.search}`;
}

/** Strict body parsing: valid UTF-8 and JSON, or InvalidRequest. */
export function parseJsonBody(body: Buffer): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    throw new NgsiError('InvalidRequest', 'The body is not valid UTF-8');
  }
  if (text.trim() === '') throw new NgsiError('InvalidRequest', 'The body is empty');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new NgsiError('InvalidRequest', 'The body is not valid JSON');
  }
}

/** Kernel error codes → NGSI-LD error types. */
const BY_CODE: Record<string, NgsiErrorType> = {
  'malformed-json': 'InvalidRequest',
  'validation-failed': 'BadRequestData',
  'bad-request': 'BadRequestData',
  unauthorized: 'Unauthorized',
  forbidden: 'Forbidden',
  'not-found': 'ResourceNotFound',
  'route-not-found': 'ResourceNotFound',
  'method-not-allowed': 'MethodNotAllowed',
  conflict: 'Conflict',
  'payload-too-large': 'PayloadTooLarge',
  'unsupported-media-type': 'UnsupportedMediaType',
  unprocessable: 'BadRequestData',
  'too-many-requests': 'ServiceUnavailable',
};

/** Renders any error as an NGSI-LD ProblemDetails (§5.5.2); server faults never show their text. */
export function sendNgsiError(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  let ngsi: NgsiError;
  let retryAfter: number | undefined;
  if (error instanceof NgsiError) ngsi = error;
  else {
    const app = toAppError(error);
    retryAfter = app.retryAfter;
    const type: NgsiErrorType =
      BY_CODE[app.code] ??
      (app.status >= 500 ? (app.status === 503 ? 'ServiceUnavailable' : 'InternalError') : 'BadRequestData');
    ngsi = new NgsiError(
      type,
      app.status >= 500 && app.status !== 503 ? 'Internal error' : (app.detail ?? app.spec.title),
      {
        cause: error,
      },
    );
  }
  if (ngsi.status >= 500 && ngsi.type !== 'LdContextNotAvailable')
    request.log.error({ err: error, type: ngsi.type }, 'NGSI-LD request failed');
  else request.log.info({ type: ngsi.type, detail: ngsi.detail }, 'NGSI-LD request rejected');
  if (retryAfter !== undefined) void reply.header('retry-after', String(retryAfter));
  return reply
    .code(ngsi.status)
    .type(JSON_TYPE)
    .send(
      JSON.stringify({
        type: `${NGSI_ERROR_BASE}${ngsi.type}`,
        title: ngsi.type,
        status: ngsi.status,
        detail: ngsi.detail,
        instance: request.url.split('?')[0],
        requestId: request.id,
      }),
    );
}
