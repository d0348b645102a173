/**
 * Operational endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document, the
 * problem-type pages and platform information. They answer without authentication and reveal
 * no data, only the platform's state.
 */
import { Type } from 'typebox';
import { AppError, Errors, errorCatalogue, findError } from '../errors/errors.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { HttpServer } from './server.ts';

export interface ReadinessCheck {
  ready: boolean;
  checks: Record<string, { ok: boolean; detail?: string }>;
}

export interface SystemRoutesOptions {
  metrics: Metrics;
  readiness: () => Promise<ReadinessCheck>;
  info: () => Record<string, unknown>;
}

const Check = Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) });
const Readiness = Type.Object({ ready: Type.Boolean(), checks: Type.Record(Type.String(), Check) });

/** Registers the operational endpoints on `app`. */
export function registerSystemRoutes(app: HttpServer, options: SystemRoutesOptions): void {
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['system'],
        summary: 'Liveness: the process is up and serving',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['system'],
        summary: 'Readiness: database reachable and migrated, not shutting down',
        response: { 200: Readiness, 503: Readiness },
      },
    },
    async (_request, reply) => {
      const result = await options.readiness();
      if (!result.ready) void reply.header('retry-after', '5');
      return reply.code(result.ready ? 200 : 503).send(result);
    },
  );

  app.get(
    '/metrics',
    { schema: { tags: ['system'], summary: 'Prometheus metrics (text exposition format)' } },
    async (_request, reply) => reply.type(options.metrics.contentType).send(await options.metrics.render()),
  );

  app.get(
    '/api/v1/openapi.json',
    { schema: { tags: ['system'], summary: 'This OpenAPI 3.1 document', hide: true } },
    async () => app.swagger(),
  );

  app.get(
    '/api/v1/system',
    {
      schema: {
        tags: ['system'],
        summary: 'Platform information: version, mode, storage engine, event bus',
        response: { 200: Type.Record(Type.String(), Type.Unknown()) },
      },
    },
    async () => options.info(),
  );

  const ErrorSpecSchema = Type.Object({ code: Type.String(), status: Type.Integer(), title: Type.String() });
  app.get(
    '/problems',
    {
      schema: {
        tags: ['system'],
        summary: 'The error catalogue: every problem type the native API returns',
        response: { 200: Type.Array(ErrorSpecSchema) },
      },
    },
    async () => [...errorCatalogue()],
  );
  app.get(
    '/problems/:code',
    {
      schema: {
        tags: ['system'],
        summary: 'Description of one problem type (the target of a problem document `type`)',
        params: Type.Object({ code: Type.String({ pattern: '^[a-z0-9-]{1,64}$' }) }),
        response: { 200: ErrorSpecSchema },
      },
    },
    async (request) => {
      const spec = findError(request.params.code);
      if (!spec)
        throw new AppError(Errors['not-found'], { detail: `No problem type "${request.params.code}"` });
      return spec;
    },
  );
}
