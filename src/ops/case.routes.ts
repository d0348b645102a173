/**
 * Cases API (/api/v1/cases), media (/api/v1/media), the routing matrix (/api/v1/routing-rules)
 * and the in-app feed (/api/v1/notifications). Thin: schema → call context → one service call.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { HttpServer } from '../kernel/index.ts';
import { callContext, SECURED, type TrustRuntime } from '../trust/index.ts';
import {
  CaseCreate,
  CaseDetail,
  CasePage,
  CaseQuery,
  Created,
  StatsQuery,
  StatsRow,
  SubtaskCreate,
  TransitionBody,
} from './case.schema.ts';
import {
  actOnCase,
  actOnSubtask,
  addSubtask,
  attachPhotos,
  caseStatistics,
  createCase,
  getCase,
  listCases,
  type OpsRuntime,
} from './case.service.ts';
import { MEDIA_TYPES, openMedia, storeMedia } from './media.ts';
import {
  createWebhook,
  deleteWebhook,
  listNotifications,
  listWebhooks,
  readNotification,
  webhookDeliveries,
} from './notify.service.ts';
import { removeRule, rulesAt, setRule } from './routing.service.ts';

const Id = Type.Object({ id: Type.String({ format: 'uuid' }) });
const IdempotencyKey = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({ minLength: 1, maxLength: 200, pattern: '^[\\x21-\\x7e]+$' }),
  ),
});

export function registerCaseRoutes(
  app: HttpServer,
  trust: TrustRuntime,
  rt: OpsRuntime,
  options: { webhookPrivate: boolean },
): void {
  const tags = ['cases'];
  const ctx = (request: Parameters<typeof callContext>[1]) => callContext(trust, request);

  app.post(
    '/api/v1/cases',
    {
      schema: {
        tags,
        summary: 'Register a case: located to its grid, routed by the matrix and dispatched at once',
        description:
          'Answers the case and `duplicates`: open cases of the same category nearby reported recently, to merge. ' +
          '422 for an unknown category or a location outside the city; 403 for a source the caller may not register.',
        security: SECURED,
        body: CaseCreate,
        response: { 201: Created },
      },
    },
    async (request, reply) => reply.code(201).send(await createCase(rt, await ctx(request), request.body)),
  );

  app.get(
    '/api/v1/cases',
    {
      schema: {
        tags,
        summary: 'Cases in your jurisdiction (and those you reported or your organisation handles)',
        description:
          'Filters: status, category (comma-separated), area (code; cases at or below it), department, level, source, ' +
          'sla (overdue, near-due, on-time, none), open, from/to (created). `order=due` lists by deadline (supervision). ' +
          'Keyset pages: pass `next` as `after`.',
        security: SECURED,
        querystring: CaseQuery,
        response: { 200: CasePage },
      },
    },
    async (request) => listCases(rt, await ctx(request), request.query),
  );

  app.get(
    '/api/v1/cases/statistics',
    {
      schema: {
        tags,
        summary:
          'Case counts by area, department, category, level or status (open, overdue, closed, mean hours to close)',
        security: SECURED,
        querystring: StatsQuery,
        response: { 200: Type.Array(StatsRow) },
      },
    },
    async (request) => caseStatistics(rt, await ctx(request), request.query),
  );

  app.get(
    '/api/v1/cases/:id',
    {
      schema: {
        tags,
        summary: 'A case with its timeline and the actions you may take now',
        description:
          "Reporters' contact details are masked unless you need them (cases.contact); unmasked reads are audited.",
        security: SECURED,
        params: Id,
        response: { 200: CaseDetail },
      },
    },
    async (request) => getCase(rt, await ctx(request), request.params.id),
  );

  app.post(
    '/api/v1/cases/:id/transitions',
    {
      schema: {
        tags,
        summary:
          'Take an action on a case (dispatch, report, verify, rate, return, suspend, cancel, merge, reopen, …)',
        description:
          '403 when your role may not take it, 409 when it is not available in this state or `version` is stale. ' +
          'Send `Idempotency-Key` to make a retry safe: the same key answers the first outcome.',
        security: SECURED,
        params: Id,
        headers: IdempotencyKey,
        body: TransitionBody,
        response: { 200: CaseDetail },
      },
    },
    async (request) =>
      actOnCase(rt, await ctx(request), request.params.id, request.body, {
        requestId: request.headers['idempotency-key'],
      }),
  );

  app.post(
    '/api/v1/cases/:id/photos',
    {
      schema: {
        tags,
        summary: 'Attach uploaded photos to a case',
        security: SECURED,
        params: Id,
        body: Type.Object(
          { photos: Type.Array(Type.String({ pattern: '^[0-9a-f]{64}$' }), { minItems: 1, maxItems: 10 }) },
          { additionalProperties: false },
        ),
        response: { 200: CaseDetail },
      },
    },
    async (request) => attachPhotos(rt, await ctx(request), request.params.id, request.body.photos),
  );

  app.post(
    '/api/v1/cases/:id/subtasks',
    {
      schema: {
        tags,
        summary:
          'Hand part of a case being handled to another organisation (子任务); report-back waits for it',
        security: SECURED,
        params: Id,
        body: SubtaskCreate,
        response: { 201: CaseDetail },
      },
    },
    async (request, reply) =>
      reply.code(201).send(await addSubtask(rt, await ctx(request), request.params.id, request.body)),
  );

  app.post(
    '/api/v1/cases/:id/subtasks/:taskId/transitions',
    {
      schema: {
        tags,
        summary: 'Take an action on a sub-task (complete, cancel)',
        security: SECURED,
        params: Type.Object({ id: Type.String({ format: 'uuid' }), taskId: Type.String({ format: 'uuid' }) }),
        headers: IdempotencyKey,
        body: Type.Object(
          {
            action: Type.String({ pattern: '^[a-z][a-z0-9-]{0,62}$' }),
            version: Type.Optional(Type.Integer({ minimum: 1 })),
            comment: Type.Optional(Type.String({ maxLength: 2000 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: CaseDetail },
      },
    },
    async (request) =>
      actOnSubtask(rt, await ctx(request), request.params.id, request.params.taskId, request.body, {
        requestId: request.headers['idempotency-key'],
      }),
  );

  // --- Media: raw bodies of the accepted types, bounded by MEDIA_MAX_BYTES ----------------------
  void app.register(async (plain) => {
    const scope = plain.withTypeProvider<TypeBoxTypeProvider>();
    scope.addContentTypeParser(
      MEDIA_TYPES as string[],
      { parseAs: 'buffer', bodyLimit: rt.mediaMaxBytes },
      (_r, body, done) => {
        done(null, body);
      },
    );
    scope.post(
      '/api/v1/media',
      {
        bodyLimit: rt.mediaMaxBytes,
        schema: {
          tags,
          summary: `Upload a photo or attachment (${MEDIA_TYPES.join(', ')}); stored by its SHA-256`,
          description:
            'The body is the file itself; its first bytes must match Content-Type. 413 above MEDIA_MAX_BYTES.',
          security: SECURED,
          response: {
            201: Type.Object({ sha256: Type.String(), contentType: Type.String(), size: Type.Integer() }),
          },
        },
      },
      async (request, reply) =>
        reply.code(201).send(
          await storeMedia(rt, await ctx(request), {
            contentType: request.headers['content-type'],
            body: Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0),
          }),
        ),
    );
  });

  app.get(
    '/api/v1/media/:sha256',
    {
      schema: {
        tags,
        summary: 'Download a stored photo or attachment',
        security: SECURED,
        params: Type.Object({ sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }) }),
      },
    },
    async (request, reply) => {
      const { media, stream } = await openMedia(rt, await ctx(request), request.params.sha256);
      return reply
        .header('content-type', media.contentType)
        .header('cache-control', 'private, max-age=31536000, immutable')
        .header('x-content-type-options', 'nosniff')
        .send(stream);
    },
  );

  // --- Routing matrix ----------------------------------------------------------------------------
  const Rule = Type.Object({
    id: Type.String(),
    category: Type.String(),
    areaCode: Type.String(),
    orgId: Type.String(),
    createdBy: Type.Union([Type.String(), Type.Null()]),
    createdAt: Type.String(),
  });

  app.get(
    '/api/v1/routing-rules',
    {
      schema: {
        tags,
        summary: 'The responsibility matrix at an area: its own rules and those it inherits from above',
        security: SECURED,
        querystring: Type.Object({ area: Type.String({ pattern: '^[0-9]{6}([0-9]{3}){0,3}$' }) }),
        response: { 200: Type.Array(Type.Intersect([Rule, Type.Object({ inherited: Type.Boolean() })])) },
      },
    },
    async (request) => rulesAt(rt.database, await ctx(request), request.query.area),
  );

  app.put(
    '/api/v1/routing-rules',
    {
      schema: {
        tags,
        summary: 'Set the department responsible for a category (event:0102, event:01*, *) in an area',
        security: SECURED,
        body: Type.Object(
          {
            category: Type.String({ maxLength: 20 }),
            areaCode: Type.String({ pattern: '^[0-9]{6}([0-9]{3}){0,3}$' }),
            orgId: Type.String({ format: 'uuid' }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Rule },
      },
    },
    async (request) => setRule(rt.database, await ctx(request), request.body),
  );

  app.delete(
    '/api/v1/routing-rules/:id',
    {
      schema: { tags, summary: 'Remove a rule (the area inherits again)', security: SECURED, params: Id },
    },
    async (request, reply) => {
      await removeRule(rt.database, await ctx(request), request.params.id);
      return reply.code(204).send();
    },
  );

  // --- In-app feed -------------------------------------------------------------------------------
  const Notification = Type.Object({
    id: Type.String(),
    caseId: Type.String(),
    caseNumber: Type.String(),
    kind: Type.String(),
    title: Type.Object({ zh: Type.String(), en: Type.String() }),
    createdAt: Type.String(),
    readAt: Type.Union([Type.String(), Type.Null()]),
  });

  app.get(
    '/api/v1/notifications',
    {
      schema: {
        tags,
        summary: 'Your in-app feed: changes of cases you reported, and work for your organisations',
        security: SECURED,
        querystring: Type.Object({
          unread: Type.Boolean({ default: false }),
          limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
          before: Type.Optional(Type.String({ format: 'date-time' })),
        }),
        response: { 200: Type.Array(Notification) },
      },
    },
    async (request) => listNotifications(rt.database, await ctx(request), request.query),
  );

  app.post(
    '/api/v1/notifications/:id/read',
    {
      schema: { tags, summary: 'Mark a notification read', security: SECURED, params: Id },
    },
    async (request, reply) => {
      await readNotification(rt.database, await ctx(request), request.params.id);
      return reply.code(204).send();
    },
  );

  // --- Webhooks ----------------------------------------------------------------------------------
  const Webhook = Type.Object({
    id: Type.String(),
    orgId: Type.String(),
    url: Type.String(),
    active: Type.Boolean(),
    createdAt: Type.String(),
  });

  app.post(
    '/api/v1/webhooks',
    {
      schema: {
        tags,
        summary:
          "Register an endpoint for an organisation's case changes (signed X-Pujiang-Signature: sha256=HMAC)",
        description:
          'The signing secret is in this answer only. Deliveries are retried with back-off; see /deliveries.',
        security: SECURED,
        body: Type.Object(
          { orgId: Type.String({ format: 'uuid' }), url: Type.String({ minLength: 8, maxLength: 2048 }) },
          { additionalProperties: false },
        ),
        response: { 201: Type.Intersect([Webhook, Type.Object({ secret: Type.String() })]) },
      },
    },
    async (request, reply) =>
      reply.code(201).send(
        await createWebhook(rt.database, await ctx(request), request.body, {
          allowPrivate: options.webhookPrivate,
        }),
      ),
  );

  app.get(
    '/api/v1/webhooks',
    {
      schema: {
        tags,
        summary: "An organisation's webhooks",
        security: SECURED,
        querystring: Type.Object({ orgId: Type.String({ format: 'uuid' }) }),
        response: { 200: Type.Array(Webhook) },
      },
    },
    async (request) => listWebhooks(rt.database, await ctx(request), request.query.orgId),
  );

  app.delete(
    '/api/v1/webhooks/:id',
    {
      schema: {
        tags,
        summary: 'Remove a webhook (pending deliveries are dropped)',
        security: SECURED,
        params: Id,
      },
    },
    async (request, reply) => {
      await deleteWebhook(rt.database, await ctx(request), request.params.id);
      return reply.code(204).send();
    },
  );

  app.get(
    '/api/v1/webhooks/:id/deliveries',
    {
      schema: {
        tags,
        summary:
          "A webhook's recent deliveries: pending, delivered or failed, with attempts and the last error",
        security: SECURED,
        params: Id,
        querystring: Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }) }),
      },
    },
    async (request) =>
      webhookDeliveries(rt.database, await ctx(request), request.params.id, request.query.limit),
  );
}
