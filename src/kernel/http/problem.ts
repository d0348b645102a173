/**
 * RFC 9457 problem details for the native API: every error, whatever threw it, leaves as one
 * shape, with a stable `code`, and never with a stack trace or SQL text.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { toDatabaseError } from '../db/database.ts';
import { AppError, Errors, isAppError, type ErrorSpec } from '../errors/errors.ts';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  code: string;
  requestId?: string;
  [extension: string]: unknown;
}

/** The problem `type` URI for a catalogue entry; `/problems/{code}` serves its description. */
export function problemType(spec: ErrorSpec): string {
  return `/problems/${spec.code}`;
}

const FASTIFY_CODES: Record<string, ErrorSpec> = {
  FST_ERR_CTP_INVALID_JSON_BODY: Errors['malformed-json'],
  FST_ERR_CTP_EMPTY_JSON_BODY: Errors['malformed-json'],
  FST_ERR_CTP_BODY_TOO_LARGE: Errors['payload-too-large'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: Errors['unsupported-media-type'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: Errors['bad-request'],
  FST_ERR_CTP_INVALID_TYPE: Errors['unsupported-media-type'],
  FST_ERR_HANDLER_TIMEOUT: Errors['handler-timeout'],
  FST_ERR_REQ_TIMEOUT: Errors['request-timeout'],
  FST_ERR_BAD_URL: Errors['bad-request'],
  FST_ERR_ASYNC_CONSTRAINT: Errors['bad-request'],
};

const CLIENT_SAFE_DETAIL: Record<string, string> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'The body could not be parsed as JSON.',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'The body is empty but the content type says JSON.',
  FST_ERR_CTP_BODY_TOO_LARGE: 'The body exceeds the size limit of this endpoint.',
  FST_ERR_HANDLER_TIMEOUT: 'The request was not answered in time; it may still complete.',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'This endpoint accepts application/json bodies only.',
};

/**
 * Classifies any thrown value as an `AppError`. Unknown errors become `internal` with no detail,
 * so their text (which may contain SQL or paths) stays in the log only.
 */
export function toAppError(error: unknown): AppError {
  if (isAppError(error)) return error;
  const mapped = toDatabaseError(error);
  if (isAppError(mapped)) return mapped;
  const fe = error as Partial<FastifyError> | undefined;
  if (fe && Array.isArray(fe.validation)) {
    return new AppError(Errors['validation-failed'], {
      detail: 'The request does not match the schema of this endpoint.',
      extensions: {
        errors: fe.validation.map((v) => ({
          location: fe.validationContext ?? 'body',
          path: v.instancePath || '/',
          message: v.message ?? 'invalid',
          ...(Object.keys(v.params).length > 0 ? { params: v.params } : {}),
        })),
      },
      cause: error,
    });
  }
  const code = typeof fe?.code === 'string' ? fe.code : undefined;
  if (code && FASTIFY_CODES[code]) {
    const detail = CLIENT_SAFE_DETAIL[code] ?? fe?.message ?? undefined;
    return new AppError(FASTIFY_CODES[code], { ...(detail ? { detail } : {}), cause: error });
  }
  if (error instanceof SyntaxError && 'body' in error)
    return new AppError(Errors['malformed-json'], { cause: error });
  const status = typeof fe?.statusCode === 'number' ? fe.statusCode : 500;
  if (status === 404) return new AppError(Errors['not-found'], { cause: error });
  if (status === 405) return new AppError(Errors['method-not-allowed'], { cause: error });
  if (status === 413) return new AppError(Errors['payload-too-large'], { cause: error });
  if (status === 415) return new AppError(Errors['unsupported-media-type'], { cause: error });
  if (status >= 400 && status < 500) return new AppError(Errors['bad-request'], { cause: error });
  return new AppError(Errors.internal, { cause: error });
}

/** Renders an error as problem+json on `reply`, logging server-side failures in full. */
export function sendProblem(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  const app = toAppError(error);
  if (app.status >= 500) request.log.error({ err: error, code: app.code }, 'request failed');
  else request.log.info({ code: app.code, detail: app.detail }, 'request rejected');
  const body: Problem = {
    type: problemType(app.spec),
    title: app.spec.title,
    status: app.status,
    ...(app.detail ? { detail: app.detail } : {}),
    instance: request.url.split('?')[0] ?? request.url,
    code: app.code,
    requestId: request.id,
    ...app.extensions,
  };
  if (app.retryAfter !== undefined) void reply.header('retry-after', String(app.retryAfter));
  return reply.code(app.status).type(PROBLEM_CONTENT_TYPE).send(body);
}
