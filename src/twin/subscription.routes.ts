/**
 * The NGSI-LD subscription API under `/ngsi-ld/v1/subscriptions` (ETSI GS CIM 009 v1.8 §5.8,
 * §6.10–6.11): thin routes over the subscription service.
 */
import { Type } from 'typebox';
import type { HttpServer } from '../kernel/index.ts';
import { param, parseOptions } from './entity.query.ts';
import { NgsiError } from './errors.ts';
import {
  negotiate,
  NGSI_PREFIX,
  pageUrl,
  sendBody,
  twinCall,
  withoutContext,
  type NgsiRuntime,
  type RouteDoc,
} from './ngsi.http.ts';
import {
  createSubscription,
  patchSubscription,
  querySubscriptions,
  removeSubscription,
  retrieveSubscription,
} from './subscription.service.ts';

const MAX_PAGE = 1000;

/** Registers the subscription API inside the NGSI-LD scope. */
export function registerSubscriptionRoutes(
  scope: HttpServer,
  rt: NgsiRuntime,
  helpers: { doc: RouteDoc },
): void {
  const { doc } = helpers;
  const idParam = Type.Object({ subscriptionId: Type.String({ maxLength: 2048 }) });
  const looseQuery = Type.Record(Type.String(), Type.Unknown(), {
    description: 'limit, offset, count, options=sysAttrs',
  });
  const idOf = (request: { params: unknown }) =>
    (request.params as { subscriptionId: string }).subscriptionId;

  scope.post('/subscriptions', { schema: doc('Create subscription (§5.8.1)') }, async (request, reply) => {
    const tc = await twinCall(rt, request);
    const id = await createSubscription(rt, tc, withoutContext(request.body));
    return reply
      .code(201)
      .header('location', `${NGSI_PREFIX}/subscriptions/${encodeURIComponent(id)}`)
      .send();
  });

  scope.get(
    '/subscriptions',
    { schema: doc('Query subscriptions (§5.8.3)', { querystring: looseQuery }) },
    async (request, reply) => {
      const media = negotiate(request, { geo: false });
      const tc = await twinCall(rt, request);
      const q = request.query as Record<string, unknown>;
      const int = (name: string, fallback: number) => {
        const raw = param(q, name);
        if (raw === undefined) return fallback;
        if (!/^\d{1,9}$/.test(raw)) throw new NgsiError('BadRequestData', `${name}: a non-negative integer`);
        return Number(raw);
      };
      const limit = int('limit', 20);
      if (limit < 1 || limit > MAX_PAGE)
        throw new NgsiError('TooManyResults', `limit: 1 to ${MAX_PAGE} subscriptions per page`);
      const offset = int('offset', 0);
      const { sysAttrs, flags } = parseOptions(q);
      const count = param(q, 'count') === 'true' || flags.has('count');
      const page = await querySubscriptions(rt, tc, { limit, offset, count, sysAttrs });
      if (page.count !== undefined) void reply.header('ngsild-results-count', String(page.count));
      const links =
        page.subscriptions.length === limit
          ? [`<${pageUrl(request, { offset: String(offset + limit) })}>; rel="next"`]
          : [];
      return sendBody(reply, media, tc.context, page.subscriptions, { links });
    },
  );

  scope.get(
    '/subscriptions/:subscriptionId',
    { schema: doc('Retrieve subscription (§5.8.2)', { params: idParam, querystring: looseQuery }) },
    async (request, reply) => {
      const media = negotiate(request, { geo: false });
      const tc = await twinCall(rt, request);
      const { sysAttrs } = parseOptions(request.query as Record<string, unknown>);
      return sendBody(
        reply,
        media,
        tc.context,
        await retrieveSubscription(rt, tc, idOf(request), { sysAttrs }),
      );
    },
  );

  scope.patch(
    '/subscriptions/:subscriptionId',
    { schema: doc('Update subscription (§5.8.4)', { params: idParam }) },
    async (request, reply) => {
      const tc = await twinCall(rt, request);
      await patchSubscription(rt, tc, idOf(request), withoutContext(request.body));
      return reply.code(204).send();
    },
  );

  scope.delete(
    '/subscriptions/:subscriptionId',
    { schema: doc('Delete subscription (§5.8.5)', { params: idParam }) },
    async (request, reply) => {
      const tc = await twinCall(rt, request);
      await removeSubscription(rt, tc, idOf(request));
      return reply.code(204).send();
    },
  );
}
