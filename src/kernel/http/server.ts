/**
 * The HTTP server (Fastify + TypeBox). Owns the cross-cutting concerns once: request ids, size
 * limits, timeouts, CORS, security headers, problem-details errors, latency metrics, the
 * generated OpenAPI 3.1 document and its rendered reference. Modules add routes as plugins.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Config } from '../config/config.ts';
import type { Logger } from '../log/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { AppError, Errors } from '../errors/errors.ts';
import { sendProblem } from './problem.ts';

export type HttpServer = FastifyInstance<
  Server,
  IncomingMessage,
  ServerResponse,
  Logger,
  TypeBoxTypeProvider
>;

export interface CreateHttpServerOptions {
  config: Pick<Config, 'bodyLimitBytes' | 'requestTimeoutMs' | 'corsOrigins' | 'mode' | 'trustProxy'>;
  logger: Logger;
  metrics: Metrics;
  version: string;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Builds the server with the shared plumbing; the caller registers module routes, then listens. */
export async function createHttpServer(options: CreateHttpServerOptions): Promise<HttpServer> {
  const { config, metrics } = options;
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: config.bodyLimitBytes,
    // Slow senders and slow handlers both get an answer instead of holding a socket forever.
    requestTimeout: config.requestTimeoutMs,
    handlerTimeout: config.requestTimeoutMs,
    connectionTimeout: config.requestTimeoutMs * 2,
    keepAliveTimeout: 72_000,
    return503OnClosing: true,
    trustProxy: config.trustProxy,
    forceCloseConnections: 'idle',
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 500 },
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: true },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.addHook('onRequest', async (request, reply) => {
    void reply.header('x-request-id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    metrics.httpDuration.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        status_code: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    );
  });

  await app.register(helmet, {
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:', 'blob:'],
        connectSrc: ["'self'"],
        frameAncestors: ["'none'"],
        upgradeInsecureRequests: null,
      },
    },
    // The API is read by other origins' browsers only through CORS, configured below.
    crossOriginResourcePolicy: { policy: 'same-site' },
    hsts: config.mode === 'production',
  });
  await app.register(cors, {
    origin: config.corsOrigins === '*' ? true : config.corsOrigins.length > 0 ? config.corsOrigins : false,
    credentials: config.corsOrigins !== '*',
    exposedHeaders: ['x-request-id', 'retry-after', 'link', 'location'],
    maxAge: 600,
  });

  // JSON only on the native API; anything else is a clear 415, not a parser crash.
  app.removeContentTypeParser(['text/plain']);
  app.addContentTypeParser(
    ['application/merge-patch+json', 'application/problem+json'],
    { parseAs: 'string', bodyLimit: config.bodyLimitBytes },
    app.getDefaultJsonParser('error', 'error'),
  );

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Pujiang (浦江) native API',
        description:
          'The native API of Pujiang, an open-source city digital foundation. Errors are RFC 9457 problem ' +
          'details (`application/problem+json`) with a stable `code`. The NGSI-LD API lives under `/ngsi-ld/v1`.',
        version: options.version,
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
      },
      tags: [
        { name: 'system', description: 'Health, readiness, metrics and platform information' },
        { name: 'codes', description: 'Validation of Chinese administrative and identity codes' },
        { name: 'areas', description: 'The jurisdiction hierarchy 市 → 区 → 街镇 → 居村 → 网格' },
        { name: 'auth', description: 'Sign-in, tokens and the caller (身份认证)' },
        { name: 'admin', description: 'Organisations, users, roles and API keys (统一账户管理)' },
        { name: 'audit', description: 'The verifiable audit trail (责任溯源)' },
        { name: 'twin', description: 'Digital-twin administration: NGSI-LD tenants (数字孪生)' },
        { name: 'workflows', description: 'Workflow definitions and working calendars (流程引擎)' },
        { name: 'cases', description: 'Cases, routing, supervision and notifications (一网统管)' },
        { name: 'open311', description: 'Open311 GeoReport v2 for citizen reporting apps (JSON and XML)' },
        {
          name: 'ngsi-ld',
          description: 'The ETSI NGSI-LD API (GS CIM 009 v1.8); errors are NGSI-LD ProblemDetails',
        },
      ],
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description: 'An access token from /api/v1/auth/login, an API key, or an external OIDC token',
          },
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
        },
      },
    },
  });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    staticCSP: false,
    uiConfig: { docExpansion: 'list', deepLinking: true, url: '/api/v1/openapi.json' },
  });

  app.setErrorHandler((error, request, reply) => sendProblem(request, reply, error));
  app.setNotFoundHandler((request, reply) =>
    sendProblem(
      request,
      reply,
      new AppError(Errors['route-not-found'], {
        detail: `No endpoint ${request.method} ${request.url.split('?')[0]}`,
      }),
    ),
  );
  return app;
}
