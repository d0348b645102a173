/**
 * Open311 GeoReport v2 at /open311/v2 (JSON and XML, by the `.json`/`.xml` suffix), so existing
 * 311 apps can report into Pujiang: services from the category classification, service
 * definitions with attributes, creating requests (form-encoded, with `api_key` — an integration's
 * API key — or a signed-in citizen's bearer token), tokens, search and one request. Reports become
 * cases through the same `createCase` as the native API; errors are Open311 error documents with
 * the HTTP status.
 */
import { randomBytes } from 'node:crypto';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { sql } from 'kysely';
import { Type } from 'typebox';
import { AppError, Errors, isAppError, type HttpServer } from '../kernel/index.ts';
import { authenticate, callContext, getArea, type CallContext, type TrustRuntime } from '../trust/index.ts';
import { findCategory } from './categories.ts';
import { createCase, type OpsRuntime } from './case.service.ts';
import * as store from './case.store.ts';
import { loadDirectory, orgById } from './directory.ts';
import {
  checkOpen311Attributes,
  open311ServiceDefinition,
  open311Services,
  parseOpen311Form,
  readOpen311Report,
  toOpen311Xml,
  type GeoReportDocuments,
  type GeoReportKind,
  type Open311RequestItem,
} from './open311.format.ts';

export const OPEN311_PREFIX = '/open311/v2';

type Format = 'json' | 'xml';
const FormatParam = Type.Union([Type.Literal('json'), Type.Literal('xml')]);

/** Sends a GeoReport document in the requested format. */
function send<K extends GeoReportKind>(
  reply: FastifyReply,
  format: Format,
  kind: K,
  doc: GeoReportDocuments[K],
  status = 200,
) {
  reply.code(status);
  if (format === 'xml') return reply.type('text/xml; charset=utf-8').send(toOpen311Xml(kind, doc));
  return reply.type('application/json; charset=utf-8').send(JSON.stringify(doc));
}

const formatOf = (request: FastifyRequest): Format => (/\.xml(\?|$)/.test(request.url) ? 'xml' : 'json');

/** Open311 times: seconds precision, Shanghai's offset (what a local client shows). */
function open311Time(d: Date): string {
  const local = new Date(d.getTime() + 8 * 3_600_000);
  return `${local.toISOString().slice(0, 19)}+08:00`;
}

const langOf = (request: FastifyRequest, q: { lang?: string | undefined }): 'zh' | 'en' =>
  q.lang === 'en' || (q.lang === undefined && /^en\b/i.test(request.headers['accept-language'] ?? ''))
    ? 'en'
    : 'zh';

function presentRequest(rt: OpsRuntime, row: store.CaseRow): Open311RequestItem {
  const category = findCategory(row.category);
  const item: Open311RequestItem = {
    service_request_id: String(row.number),
    status: row.open ? 'open' : 'closed',
    status_notes: statusNote(row.status),
    service_name: category?.name ?? row.category,
    service_code: row.category,
    description: row.description,
    requested_datetime: open311Time(row.created_at),
    updated_datetime: open311Time(row.updated_at),
    lat: row.lat,
    long: row.lon,
  };
  const agencies = row.department_ids
    .map((d) => orgById(rt.database, d)?.name)
    .filter((n): n is string => !!n);
  if (agencies.length > 0) item.agency_responsible = agencies.join('、');
  if (row.due_at && row.open) item.expected_datetime = open311Time(row.due_at);
  if (row.address) item.address = row.address;
  item.address_id = row.area_code;
  const media = row.media_urls[0];
  if (media !== undefined) item.media_url = media;
  return item;
}

const NOTES: Record<string, string> = {
  registered: '已立案，等待派遣',
  handling: '处置中',
  verifying: '已处置，待核查',
  suspended: '已挂账',
  closed: '已结案',
  evaluated: '已结案并评价',
  cancelled: '已作废',
  merged: '已与其他案件合并',
};
const statusNote = (s: string) => NOTES[s] ?? s;

/** Turns any failure into an Open311 error document with the right HTTP status. */
function open311Error(error: unknown): { status: number; description: string } {
  if (isAppError(error)) {
    const status = error.spec.status === 422 ? 400 : error.spec.status;
    return { status, description: error.detail ?? error.spec.title };
  }
  const e = error as { statusCode?: number; validation?: unknown; message?: string; code?: string };
  if (e.statusCode === 413) return { status: 413, description: 'The request body is too large' };
  if (e.statusCode === 415) return { status: 415, description: 'Send application/x-www-form-urlencoded' };
  if (e.validation !== undefined || (e.statusCode !== undefined && e.statusCode < 500))
    return { status: e.statusCode ?? 400, description: e.message ?? 'Bad request' };
  return { status: 500, description: 'Internal error' };
}

export async function registerOpen311Routes(
  app: HttpServer,
  trust: TrustRuntime,
  rt: OpsRuntime,
): Promise<void> {
  await app.register(
    async (plain) => {
      const scope = plain.withTypeProvider<TypeBoxTypeProvider>();
      scope.addContentTypeParser(
        'application/x-www-form-urlencoded',
        { parseAs: 'string', bodyLimit: 64 * 1024 },
        (_r, body, done) => {
          done(null, body);
        },
      );
      scope.setErrorHandler((error, request, reply) => {
        const { status, description } = open311Error(error);
        if (status >= 500) request.log.error({ err: error }, 'open311 request failed');
        return send(reply, formatOf(request), 'errors', [{ code: status, description }], status);
      });
      scope.setNotFoundHandler((request, reply) =>
        send(
          reply,
          formatOf(request),
          'errors',
          [{ code: 404, description: `No endpoint ${request.method} ${request.url.split('?')[0] ?? ''}` }],
          404,
        ),
      );
      const tags = ['open311'];

      scope.get(
        `/services.:format`,
        {
          schema: {
            tags,
            summary: 'Service list: one service per case category (部件/事件/热线 classes)',
            params: Type.Object({ format: FormatParam }),
            querystring: Type.Object({
              lang: Type.Optional(Type.Union([Type.Literal('zh'), Type.Literal('en')])),
              jurisdiction_id: Type.Optional(Type.String()),
            }),
          },
        },
        (request, reply) =>
          send(reply, request.params.format, 'services', open311Services(langOf(request, request.query))),
      );

      scope.get(
        `/services/:code.:format`,
        {
          schema: {
            tags,
            summary: "A service's definition: its attributes (component id, urgency, time of the event)",
            params: Type.Object({ code: Type.String({ maxLength: 30 }), format: FormatParam }),
            querystring: Type.Object({
              lang: Type.Optional(Type.Union([Type.Literal('zh'), Type.Literal('en')])),
              jurisdiction_id: Type.Optional(Type.String()),
            }),
          },
        },
        (request, reply) => {
          const def = open311ServiceDefinition(
            decodeURIComponent(request.params.code),
            langOf(request, request.query),
          );
          if (!def)
            throw new AppError(Errors['not-found'], {
              detail: `service_code ${request.params.code} not found`,
            });
          return send(reply, request.params.format, 'service-definition', def);
        },
      );

      scope.post(
        `/requests.:format`,
        {
          schema: {
            tags,
            summary:
              'Report a problem (form-encoded: api_key, service_code, lat+long or address_id, description, media_url, attribute[…])',
            description:
              'api_key is an integration API key with cases.report over the location; a signed-in citizen may send a bearer ' +
              'token instead. address_id may be an area code (grid, community, street) when lat/long are unknown. Answers the ' +
              'service_request_id and a token. Locations outside the city are refused with an Open311 error.',
            params: Type.Object({ format: FormatParam }),
          },
        },
        async (request, reply) => {
          const format = request.params.format;
          if (typeof request.body !== 'string')
            throw new AppError(Errors['unsupported-media-type'], {
              detail: 'Send application/x-www-form-urlencoded',
            });
          let form;
          try {
            form = parseOpen311Form(request.body);
          } catch (e) {
            throw new AppError(Errors['bad-request'], { detail: (e as Error).message });
          }
          const signedIn = request.headers.authorization !== undefined;
          const read = readOpen311Report(form, { apiKeyRequired: !signedIn });
          if (!read.ok) return send(reply, format, 'errors', read.errors, 400);
          const r = read.report;
          const ctx: CallContext = r.apiKey
            ? { actor: await authenticate(trust, { apiKey: r.apiKey }), requestId: request.id, purpose: null }
            : await callContext(trust, request);
          const category = findCategory(r.serviceCode);
          if (!category)
            throw new AppError(Errors['not-found'], { detail: `service_code ${r.serviceCode} not found` });
          const problems = checkOpen311Attributes(r.serviceCode, r.attributes);
          if (problems.length > 0)
            return send(
              reply,
              format,
              'errors',
              problems.map((description) => ({ code: 400, description })),
              400,
            );
          let location: { lon: number; lat: number };
          if (r.lat !== undefined && r.long !== undefined) location = { lon: r.long, lat: r.lat };
          else if (r.addressId !== undefined && /^[0-9]{6}([0-9]{3}){0,3}$/.test(r.addressId)) {
            const area = await getArea(rt.database, r.addressId).catch(() => undefined);
            if (!area?.centroid)
              throw new AppError(Errors['bad-request'], {
                detail: `address_id ${r.addressId} is not an area of this city`,
              });
            location = { lon: area.centroid[0], lat: area.centroid[1] };
          } else
            throw new AppError(Errors['bad-request'], {
              detail:
                'lat and long are required (or address_id as an area code): addresses are not geocoded here',
            });
          const name = [r.lastName, r.firstName].filter((x) => x !== undefined).join('');
          const token = randomBytes(16).toString('hex');
          const attributes: Record<string, unknown> = { ...r.attributes };
          if (r.deviceId) attributes['device_id'] = r.deviceId;
          if (r.accountId) attributes['account_id'] = r.accountId;
          const created = await createCase(
            rt,
            ctx,
            {
              source: 'citizen',
              category: category.id,
              description: r.description ?? category.name,
              location,
              ...(r.addressString ? { address: r.addressString } : {}),
              reporter: {
                ...(name ? { name: name.slice(0, 50) } : {}),
                ...(r.phone ? { phone: r.phone } : {}),
                ...(r.email ? { email: r.email } : {}),
              },
              attributes,
            },
            { channel: 'open311', mediaUrls: r.mediaUrl ? [r.mediaUrl] : [], open311Token: token },
          ).catch((e: unknown) => {
            if (isAppError(e) && e.spec.status === 422 && /outside/.test(e.detail ?? ''))
              throw new AppError(Errors['bad-request'], {
                detail: `${e.detail ?? ''}: not in this jurisdiction`,
              });
            throw e;
          });
          const c = created.case;
          const notice = c.sla.dueAt
            ? `已受理，编号 ${c.number}；预计办结时间 ${open311Time(new Date(c.sla.dueAt))}`
            : `已受理，编号 ${c.number}`;
          return send(
            reply,
            format,
            'request-created',
            [
              {
                service_request_id: c.number,
                token,
                service_notice: notice,
                ...(r.accountId ? { account_id: r.accountId } : {}),
              },
            ],
            201,
          );
        },
      );

      scope.get(
        `/tokens/:token.:format`,
        {
          schema: {
            tags,
            summary: 'The service_request_id of a token',
            params: Type.Object({ token: Type.String({ pattern: '^[0-9a-f]{32}$' }), format: FormatParam }),
          },
        },
        async (request, reply) => {
          const row = await store.findCaseByToken(rt.database.db, request.params.token);
          if (!row) throw new AppError(Errors['not-found'], { detail: 'token not found' });
          return send(reply, request.params.format, 'tokens', [
            { service_request_id: String(row.number), token: request.params.token },
          ]);
        },
      );

      const SearchQuery = Type.Object({
        service_request_id: Type.Optional(Type.String({ pattern: '^[0-9]{1,18}(,[0-9]{1,18}){0,199}$' })),
        service_code: Type.Optional(Type.String({ maxLength: 1000 })),
        status: Type.Optional(Type.String({ pattern: '^(open|closed)(,(open|closed))?$' })),
        start_date: Type.Optional(Type.String({ format: 'date-time' })),
        end_date: Type.Optional(Type.String({ format: 'date-time' })),
        page: Type.Integer({ minimum: 1, maximum: 10_000, default: 1 }),
        page_size: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
        jurisdiction_id: Type.Optional(Type.String()),
      });

      scope.get(
        `/requests.:format`,
        {
          schema: {
            tags,
            summary: 'Search reports made through Open311 (ids, service_code, status, dates; page/page_size)',
            description:
              'Public, without personal data. Without ids or dates, the last 90 days (as the specification says).',
            params: Type.Object({ format: FormatParam }),
            querystring: SearchQuery,
          },
        },
        async (request, reply) => {
          const q = request.query;
          const codes = q.service_code?.split(',').map((s) => s.trim());
          for (const c of codes ?? [])
            if (!findCategory(c))
              throw new AppError(Errors['bad-request'], { detail: `service_code ${c} not found` });
          const statuses = q.status?.split(',');
          const ids = q.service_request_id?.split(',');
          const end = q.end_date ? new Date(q.end_date) : undefined;
          const start = q.start_date
            ? new Date(q.start_date)
            : ids
              ? undefined
              : new Date((end ?? new Date()).getTime() - 90 * 86_400_000);
          if (start && end && start > end)
            throw new AppError(Errors['bad-request'], { detail: 'start_date is after end_date' });
          await loadDirectory(rt.database);
          const rows = await store.listCases(
            rt.database.db,
            {
              channel: 'open311',
              numbers: ids,
              category: codes,
              open: statuses && statuses.length === 1 ? statuses[0] === 'open' : undefined,
              createdFrom: start,
              createdTo: end,
              limit: q.page_size,
              offset: (q.page - 1) * q.page_size,
              now: new Date(),
            },
            // Open311 search is public: reports made through it, without personal data.
            sql<boolean>`true`,
          );
          return send(
            reply,
            request.params.format,
            'requests',
            rows.map((r) => presentRequest(rt, r)),
          );
        },
      );

      scope.get(
        `/requests/:id.:format`,
        {
          schema: {
            tags,
            summary: 'One report made through Open311',
            params: Type.Object({ id: Type.String({ pattern: '^[0-9]{1,18}$' }), format: FormatParam }),
          },
        },
        async (request, reply) => {
          const row = await store.findCaseByNumber(rt.database.db, request.params.id);
          if (!row || row.channel !== 'open311')
            throw new AppError(Errors['not-found'], { detail: 'service_request_id not found' });
          await loadDirectory(rt.database);
          return send(reply, request.params.format, 'requests', [presentRequest(rt, row)]);
        },
      );
    },
    { prefix: OPEN311_PREFIX },
  );
}
