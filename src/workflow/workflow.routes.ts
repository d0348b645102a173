/**
 * Workflow API (/api/v1/workflows): definitions (list, read a version, version list, check,
 * publish) and working calendars. Reading needs a signed-in caller; publishing needs
 * `workflows.manage`. Instances are reached through the module that owns them (e.g. cases).
 */
import { Type } from 'typebox';
import { AppError, type HttpServer } from '../kernel/index.ts';
import { callContext, requireSignedIn, SECURED, SYSTEM_ROLES, type TrustRuntime } from '../trust/index.ts';
import { WorkflowErrors } from './errors.ts';
import { DefinitionSchema } from './definition.ts';
import * as store from './workflow.store.ts';
import { checkDefinition, getDefinition, publishCalendar, publishDefinition } from './workflow.service.ts';

const Key = Type.String({ pattern: '^[a-z][a-z0-9]*(\\.[a-z][a-z0-9-]*)+$', maxLength: 100 });
const DefinitionVersion = Type.Object({
  key: Type.String(),
  version: Type.Integer(),
  createdAt: Type.String({ format: 'date-time' }),
  createdBy: Type.Union([Type.String(), Type.Null()]),
  definition: DefinitionSchema,
});
const Published = Type.Object({ key: Type.String(), version: Type.Integer(), created: Type.Boolean() });

/** The roles a definition may name: the system roles (custom roles are per deployment and change). */
export const DEFINITION_ROLES: ReadonlySet<string> = new Set(SYSTEM_ROLES.map((r) => r.code));

export function registerWorkflowRoutes(app: HttpServer, rt: TrustRuntime): void {
  const { database } = rt;
  const tags = ['workflows'];

  app.get(
    '/api/v1/workflows',
    {
      schema: {
        tags,
        summary: 'The latest version of every workflow definition',
        security: SECURED,
        response: { 200: Type.Array(DefinitionVersion) },
      },
    },
    async (request) => {
      requireSignedIn((await callContext(rt, request)).actor);
      return (await store.listDefinitions(database.db)).map(({ digest: _d, ...r }) => r);
    },
  );

  app.post(
    '/api/v1/workflows/check',
    {
      schema: {
        tags,
        summary: 'Check a definition without publishing it: every problem, each with where it is',
        security: SECURED,
        body: Type.Unknown(),
        response: { 200: Type.Object({ valid: Type.Boolean(), problems: Type.Array(Type.String()) }) },
      },
    },
    async (request) => {
      requireSignedIn((await callContext(rt, request)).actor);
      const { problems } = await checkDefinition(database, request.body, { roles: DEFINITION_ROLES });
      return { valid: problems.length === 0, problems };
    },
  );

  app.get(
    '/api/v1/workflows/calendars',
    {
      schema: {
        tags,
        summary: 'Working calendars (工作日历) SLAs are counted on',
        security: SECURED,
        response: {
          200: Type.Array(
            Type.Object({
              code: Type.String(),
              version: Type.Integer(),
              updatedAt: Type.String(),
              calendar: Type.Unknown(),
            }),
          ),
        },
      },
    },
    async (request) => {
      requireSignedIn((await callContext(rt, request)).actor);
      return store.listCalendars(database.db);
    },
  );

  app.put(
    '/api/v1/workflows/calendars/:code',
    {
      schema: {
        tags,
        summary: "Create or replace a working calendar (e.g. load next year's holidays)",
        security: SECURED,
        params: Type.Object({ code: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }) }),
        body: Type.Unknown(),
        response: { 200: Type.Object({ code: Type.String(), version: Type.Integer() }) },
      },
    },
    async (request) => {
      const body = request.body;
      const code = (body as { code?: unknown } | null)?.code;
      const ctx = await callContext(rt, request);
      if (code !== request.params.code)
        return publishCalendar(database, ctx, { ...(body as object), code: request.params.code });
      return publishCalendar(database, ctx, body);
    },
  );

  app.get(
    '/api/v1/workflows/:key',
    {
      schema: {
        tags,
        summary: 'A workflow definition: the latest version, or `version`',
        security: SECURED,
        params: Type.Object({ key: Key }),
        querystring: Type.Object({ version: Type.Optional(Type.Integer({ minimum: 1 })) }),
        response: { 200: DefinitionVersion },
      },
    },
    async (request) => {
      requireSignedIn((await callContext(rt, request)).actor);
      const { definition, version } = await getDefinition(
        database,
        request.params.key,
        request.query.version,
      );
      const row = await store.findDefinition(database.db, definition.key, version);
      return {
        key: definition.key,
        version,
        createdAt: row?.createdAt ?? '',
        createdBy: row?.createdBy ?? null,
        definition,
      };
    },
  );

  app.get(
    '/api/v1/workflows/:key/versions',
    {
      schema: {
        tags,
        summary: 'Every published version of a definition, newest first',
        security: SECURED,
        params: Type.Object({ key: Key }),
        response: { 200: Type.Array(DefinitionVersion) },
      },
    },
    async (request) => {
      requireSignedIn((await callContext(rt, request)).actor);
      return (await store.definitionVersions(database.db, request.params.key)).map(
        ({ digest: _d, ...r }) => r,
      );
    },
  );

  app.put(
    '/api/v1/workflows/:key',
    {
      schema: {
        tags,
        summary: 'Publish a new version of a definition (running instances keep theirs)',
        description:
          'Answers 201 with the new version, or 200 with the latest version when its content is the same. ' +
          '422 lists every problem: unreachable states, actions without roles, unknown roles, targets, guards or calendars.',
        security: SECURED,
        params: Type.Object({ key: Key }),
        body: Type.Unknown(),
        response: { 200: Published, 201: Published },
      },
    },
    async (request, reply) => {
      const ctx = await callContext(rt, request);
      requireSignedIn(ctx.actor);
      const body = request.body;
      const key = (body as { key?: unknown } | null)?.key;
      const input =
        key === undefined && body !== null && typeof body === 'object'
          ? { ...body, key: request.params.key }
          : body;
      if (key !== undefined && key !== request.params.key)
        throw new AppError(WorkflowErrors['workflow-invalid-definition'], {
          detail: `key: ${JSON.stringify(key)} does not match the path's "${request.params.key}"`,
        });
      const r = await publishDefinition(database, ctx, input, { roles: DEFINITION_ROLES });
      return reply.code(r.created ? 201 : 200).send(r);
    },
  );
}
