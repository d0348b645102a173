/**
 * The one error catalogue (错误目录). Every error a client can see has a stable code, an HTTP
 * status and a human title here; the HTTP layer renders them as RFC 9457 problem details.
 * Later modules add their own entries with `defineErrors` so the catalogue stays in one shape.
 */

export interface ErrorSpec {
  /** Stable, kebab-case identifier; part of the API contract (the problem `type` ends with it). */
  readonly code: string;
  readonly status: number;
  /** Short, constant summary (RFC 9457 `title`); the per-occurrence text goes in `detail`. */
  readonly title: string;
}

const catalogue = new Map<string, ErrorSpec>();

/** Registers error specs under their codes; throws at import time if a code is defined twice. */
export function defineErrors<const T extends Record<string, Omit<ErrorSpec, 'code'>>>(
  specs: T,
): { readonly [K in keyof T]: ErrorSpec } {
  const out: Record<string, ErrorSpec> = {};
  for (const [code, spec] of Object.entries(specs)) {
    if (catalogue.has(code)) throw new Error(`error code defined twice: ${code}`);
    const full = { code, ...spec };
    catalogue.set(code, full);
    out[code] = full;
  }
  return out as { readonly [K in keyof T]: ErrorSpec };
}

/** Every registered error, for documentation and the `/problems/{code}` pages. */
export function errorCatalogue(): readonly ErrorSpec[] {
  return [...catalogue.values()].sort((a, b) => a.code.localeCompare(b.code));
}

export function findError(code: string): ErrorSpec | undefined {
  return catalogue.get(code);
}

export const Errors = defineErrors({
  'validation-failed': { status: 400, title: 'The request does not match the schema' },
  'malformed-json': { status: 400, title: 'The request body is not valid JSON' },
  'bad-request': { status: 400, title: 'The request cannot be processed as sent' },
  unauthorized: { status: 401, title: 'Authentication is required' },
  forbidden: { status: 403, title: 'The caller may not perform this action' },
  'not-found': { status: 404, title: 'The resource does not exist or is not visible to the caller' },
  'route-not-found': { status: 404, title: 'No such endpoint' },
  'method-not-allowed': { status: 405, title: 'The method is not allowed on this endpoint' },
  'request-timeout': { status: 408, title: 'The request took too long to arrive' },
  conflict: { status: 409, title: 'The request conflicts with the current state' },
  'payload-too-large': { status: 413, title: 'The request body is larger than allowed' },
  'unsupported-media-type': { status: 415, title: 'The request content type is not supported' },
  unprocessable: { status: 422, title: 'The request is well-formed but its content is invalid' },
  'invalid-division-code': { status: 422, title: 'Invalid administrative division code (GB/T 2260)' },
  'invalid-resident-id': { status: 422, title: 'Invalid resident identity number (GB 11643)' },
  'invalid-credit-code': { status: 422, title: 'Invalid unified social credit code (GB 32100)' },
  'invalid-component-id': { status: 422, title: 'Invalid city component identifier' },
  'too-many-requests': { status: 429, title: 'Too many requests' },
  internal: { status: 500, title: 'Internal error' },
  'database-unavailable': { status: 503, title: 'The database is unavailable; retry later' },
  'not-ready': { status: 503, title: 'The service is not ready' },
  'service-unavailable': { status: 503, title: 'The service is temporarily unavailable' },
  'handler-timeout': { status: 503, title: 'The request took too long to process' },
});

/** A problem we can name: thrown by services, rendered by the HTTP layer, never a stack trace. */
export class AppError extends Error {
  readonly spec: ErrorSpec;
  readonly detail: string | undefined;
  /** Extra members for the problem document (e.g. `errors`, `field`); must be client-safe. */
  readonly extensions: Readonly<Record<string, unknown>>;
  /** Seconds a client should wait before retrying (sent as `Retry-After`). */
  readonly retryAfter: number | undefined;

  constructor(
    spec: ErrorSpec,
    options: {
      detail?: string;
      extensions?: Record<string, unknown>;
      retryAfter?: number;
      cause?: unknown;
    } = {},
  ) {
    super(options.detail ?? spec.title, { cause: options.cause });
    this.name = 'AppError';
    this.spec = spec;
    this.detail = options.detail;
    this.extensions = options.extensions ?? {};
    this.retryAfter = options.retryAfter;
  }

  get status(): number {
    return this.spec.status;
  }

  get code(): string {
    return this.spec.code;
  }
}

export function isAppError(e: unknown): e is AppError {
  return e instanceof AppError;
}
