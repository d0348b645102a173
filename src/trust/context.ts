/**
 * The call context of an HTTP request: the authenticated actor, the request id and the declared
 * purpose of a personal-data read. Resolved once per request, on first use, so public endpoints
 * pay nothing. Every module's routes get their context here.
 */
import type { FastifyRequest } from 'fastify';
import { AppError, Errors } from '../kernel/index.ts';
import { authenticate, type TrustRuntime } from './auth.service.ts';
import type { CallContext } from './authz.ts';

const contexts = new WeakMap<FastifyRequest, Promise<CallContext>>();

const header = (request: FastifyRequest, name: string): string | undefined => {
  const v = request.headers[name];
  return Array.isArray(v) ? v[0] : v;
};

/** `X-Purpose` (用途), percent-encoded UTF-8 allowed so Chinese text survives the header. */
function purposeOf(request: FastifyRequest): string | null {
  const raw = header(request, 'x-purpose');
  if (raw === undefined || raw.trim() === '') return null;
  let text: string;
  try {
    text = decodeURIComponent(raw.trim());
  } catch {
    throw new AppError(Errors['bad-request'], { detail: 'X-Purpose is not valid percent-encoded UTF-8' });
  }
  if (Array.from(text).length > 200)
    throw new AppError(Errors['bad-request'], { detail: 'X-Purpose is longer than 200 characters' });
  return text;
}

/** The request's call context (authenticates on first call; 401 for a bad credential). */
export function callContext(rt: TrustRuntime, request: FastifyRequest): Promise<CallContext> {
  let ctx = contexts.get(request);
  if (!ctx) {
    ctx = (async () => ({
      actor: await authenticate(rt, {
        authorization: header(request, 'authorization'),
        apiKey: header(request, 'x-api-key'),
      }),
      requestId: request.id,
      purpose: purposeOf(request),
    }))();
    contexts.set(request, ctx);
  }
  return ctx;
}

/** The client's address, for per-address sign-in limits. */
export function clientAddress(request: FastifyRequest): string {
  return request.ip;
}

/** The OpenAPI security requirement of every signed-in endpoint: a bearer token or an API key. */
export const SECURED: { [scheme: string]: string[] }[] = [{ bearer: [] }, { apiKey: [] }];
