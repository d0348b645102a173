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

const SQLSTATE_ERRORS: Record<string, ErrorSpec> = {
  '23505': Errors.conflict, // unique_violation
  '23503': Errors.conflict, // foreign_key_violation
  '23P01': Errors.conflict, // exclusion_violation
  '40001': Errors.conflict, // serialization_failure: the client may retry
  '23514': Errors.unprocessable, // check_violation
  '23502': Errors.unprocessable, // not_null_violation
};

const STATUS_ERRORS: Record<number, ErrorSpec> = {
  401: Errors.unauthorized,
  403: Errors.forbidden,
  404: Errors['not-found'],
  405: Errors['method-not-allowed'],
  408: Errors['request-timeout'],
  409: Errors.conflict,
  413: Errors['payload-too-large'],
  415: Errors['unsupported-media-type'],
  422: Errors.unprocessable,
  429: Errors['too-many-requests'],
  503: Errors['service-unavailable'],
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
  // A constraint the database enforced is the client's conflict or bad value, not a server fault.
  const sqlState = typeof fe?.code === 'string' && /^[0-9A-Z]{5}$/.test(fe.code) ? fe.code : undefined;
  if (sqlState && SQLSTATE_ERRORS[sqlState]) return new AppError(SQLSTATE_ERRORS[sqlState], { cause: error });
  if (sqlState?.startsWith('22'))
    return new AppError(Errors['bad-request'], {
      detail: 'A value has the wrong type or range.',
      cause: error,
    });
  const status = typeof fe?.statusCode === 'number' ? fe.statusCode : 500;
  const byStatus = STATUS_ERRORS[status];
  if (byStatus) return new AppError(byStatus, { cause: error });
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
