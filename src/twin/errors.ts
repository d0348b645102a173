/**
 * NGSI-LD errors (ETSI GS CIM 009 §5.5.2 and Table 5.5.2-1): the spec's error types, their HTTP
 * statuses, and the ProblemDetails document the NGSI-LD API answers with. Twin code throws
 * `NgsiError`; the NGSI-LD routes' error handler renders it (and any other error) in this shape.
 */

export const NGSI_ERROR_BASE = 'https://uri.etsi.org/ngsi-ld/errors/';

/** Error type → HTTP status, as the spec assigns them. */
export const NGSI_ERROR_STATUS = {
  InvalidRequest: 400,
  BadRequestData: 400,
  AlreadyExists: 409,
  OperationNotSupported: 422,
  ResourceNotFound: 404,
  InternalError: 500,
  TooComplexQuery: 403,
  TooManyResults: 403,
  LdContextNotAvailable: 503,
  NoMultiTenantSupport: 501,
  NonexistentTenant: 404,
  // Not NGSI-LD types, but answers the API must give in the same shape.
  Unauthorized: 401,
  Forbidden: 403,
  PayloadTooLarge: 413,
  UnsupportedMediaType: 415,
  NotAcceptable: 406,
  MethodNotAllowed: 405,
  Conflict: 409,
  ServiceUnavailable: 503,
} as const;

export type NgsiErrorType = keyof typeof NGSI_ERROR_STATUS;

/** A refusal the NGSI-LD API can name; its detail is client-safe text. */
export class NgsiError extends Error {
  readonly type: NgsiErrorType;
  readonly status: number;
  readonly detail: string;
  constructor(type: NgsiErrorType, detail: string, options: { cause?: unknown } = {}) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NgsiError';
    this.type = type;
    this.status = NGSI_ERROR_STATUS[type];
    this.detail = detail;
  }
}

export const isNgsiError = (e: unknown): e is NgsiError => e instanceof NgsiError;
