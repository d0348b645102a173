/** Sign-in and admin API: validate (schema) → context (authn) → one service call. */
import { Type } from 'typebox';
import type { HttpServer } from '../kernel/index.ts';
import { login, logout, refresh, type TrustRuntime } from './auth.service.ts';
import { callContext, clientAddress, SECURED } from './context.ts';
import {
  ApiKey,
  ApiKeyCreate,
  ApiKeyIssued,
  LoginRequest,
  Me,
  MembershipCreate,
  Organisation,
  OrgCreate,
  OrgPatch,
  OrgQuery,
  Paging,
  PasswordChange,
  RefreshRequest,
  Role,
  RoleCreate,
  RolePatch,
  TokenPair,
  User,
  UserCreate,
  UserPatch,
  UserQuery,
} from './identity.schema.ts';
import { createOrg, getOrg, listOrganisations, patchOrg } from './orgs.service.ts';
import {
  addMembership,
  changeOwnPassword,
  createRole,
  createUser,
  getUser,
  issueApiKey,
  listApiKeysFor,
  listRolesFor,
  listUsersFor,
  patchRole,
  patchUser,
  removeMembership,
  revokeApiKeyFor,
  whoAmI,
} from './users.service.ts';

const IdParams = Type.Object({ id: Type.String({ format: 'uuid' }) });

export function registerIdentityRoutes(app: HttpServer, rt: TrustRuntime): void {
  const { database } = rt;

  // --- auth ---
  app.post(
    '/api/v1/auth/login',
    {
      schema: {
        tags: ['auth'],
        summary: 'Sign in with username and password',
        body: LoginRequest,
        response: { 200: TokenPair },
      },
    },
    async (request) =>
      login(rt, { ...(await callContext(rt, request)), clientAddress: clientAddress(request) }, request.body),
  );
  app.post(
    '/api/v1/auth/refresh',
    {
      schema: {
        tags: ['auth'],
        summary: 'Exchange a refresh token for a new token pair',
        body: RefreshRequest,
        response: { 200: TokenPair },
      },
    },
    async (request) => refresh(rt, await callContext(rt, request), request.body.refreshToken),
  );
  app.post(
    '/api/v1/auth/logout',
    {
      schema: {
        tags: ['auth'],
        summary: 'Revoke the sign-in a refresh token belongs to',
        body: RefreshRequest,
      },
    },
    async (request, reply) => {
      await logout(rt, await callContext(rt, request), request.body.refreshToken);
      return reply.code(204).send();
    },
  );
  app.get(
    '/api/v1/auth/me',
    {
      schema: {
        tags: ['auth'],
        summary: 'The caller and their grants',
        security: SECURED,
        response: { 200: Me },
      },
    },
    async (request) => whoAmI(rt, await callContext(rt, request)),
  );
  app.post(
    '/api/v1/auth/password',
    {
      schema: {
        tags: ['auth'],
        summary: "Change the caller's password",
        security: SECURED,
        body: PasswordChange,
      },
    },
    async (request, reply) => {
      await changeOwnPassword(rt, await callContext(rt, request), request.body);
      return reply.code(204).send();
    },
  );

  // --- organisations ---
  app.get(
    '/api/v1/orgs',
    {
      schema: {
        tags: ['admin'],
        summary: "Organisations in the caller's jurisdiction",
        security: SECURED,
        querystring: OrgQuery,
        response: { 200: Type.Array(Organisation) },
      },
    },
    async (request) => listOrganisations(database, await callContext(rt, request), request.query),
  );
  app.post(
    '/api/v1/orgs',
    {
      schema: {
        tags: ['admin'],
        summary: 'Create an organisation',
        security: SECURED,
        body: OrgCreate,
        response: { 201: Organisation },
      },
    },
    async (request, reply) =>
      reply.code(201).send(await createOrg(database, await callContext(rt, request), request.body)),
  );
  app.get(
    '/api/v1/orgs/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'One organisation',
        security: SECURED,
        params: IdParams,
        response: { 200: Organisation },
      },
    },
    async (request) => getOrg(database, await callContext(rt, request), request.params.id),
  );
  app.patch(
    '/api/v1/orgs/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'Change an organisation',
        security: SECURED,
        params: IdParams,
        body: OrgPatch,
        response: { 200: Organisation },
      },
    },
    async (request) => patchOrg(database, await callContext(rt, request), request.params.id, request.body),
  );

  // --- users and memberships ---
  app.get(
    '/api/v1/users',
    {
      schema: {
        tags: ['admin'],
        summary: "Users in the caller's jurisdiction (audited)",
        security: SECURED,
        querystring: UserQuery,
        response: { 200: Type.Array(User) },
      },
    },
    async (request) => listUsersFor(rt, await callContext(rt, request), request.query),
  );
  app.post(
    '/api/v1/users',
    {
      schema: {
        tags: ['admin'],
        summary: 'Create a user',
        security: SECURED,
        body: UserCreate,
        response: { 201: User },
      },
    },
    async (request, reply) =>
      reply.code(201).send(await createUser(rt, await callContext(rt, request), request.body)),
  );
  app.get(
    '/api/v1/users/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'One user with memberships (a personal-data read: audited; send X-Purpose)',
        security: SECURED,
        params: IdParams,
        response: { 200: User },
      },
    },
    async (request) => getUser(rt, await callContext(rt, request), request.params.id),
  );
  app.patch(
    '/api/v1/users/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'Change a user (disable, reset password, move)',
        security: SECURED,
        params: IdParams,
        body: UserPatch,
        response: { 200: User },
      },
    },
    async (request) => patchUser(rt, await callContext(rt, request), request.params.id, request.body),
  );
  app.post(
    '/api/v1/users/:id/memberships',
    {
      schema: {
        tags: ['admin'],
        summary: 'Grant a user a role in an organisation',
        security: SECURED,
        params: IdParams,
        body: MembershipCreate,
        response: { 201: User },
      },
    },
    async (request, reply) =>
      reply
        .code(201)
        .send(await addMembership(rt, await callContext(rt, request), request.params.id, request.body)),
  );
  app.delete(
    '/api/v1/memberships/:id',
    { schema: { tags: ['admin'], summary: 'Remove a membership', security: SECURED, params: IdParams } },
    async (request, reply) => {
      await removeMembership(rt, await callContext(rt, request), request.params.id);
      return reply.code(204).send();
    },
  );

  // --- roles ---
  app.get(
    '/api/v1/roles',
    {
      schema: {
        tags: ['admin'],
        summary: 'Roles and their permissions',
        security: SECURED,
        response: { 200: Type.Array(Role) },
      },
    },
    async (request) => listRolesFor(rt, await callContext(rt, request)),
  );
  app.post(
    '/api/v1/roles',
    {
      schema: {
        tags: ['admin'],
        summary: 'Create a custom role',
        security: SECURED,
        body: RoleCreate,
        response: { 201: Role },
      },
    },
    async (request, reply) =>
      reply.code(201).send(await createRole(rt, await callContext(rt, request), request.body)),
  );
  app.patch(
    '/api/v1/roles/:code',
    {
      schema: {
        tags: ['admin'],
        summary: 'Change a custom role',
        security: SECURED,
        params: Type.Object({ code: Type.String({ pattern: '^[a-z][a-z0-9-]{1,62}$' }) }),
        body: RolePatch,
        response: { 200: Role },
      },
    },
    async (request) => patchRole(rt, await callContext(rt, request), request.params.code, request.body),
  );

  // --- API keys ---
  app.get(
    '/api/v1/api-keys',
    {
      schema: {
        tags: ['admin'],
        summary: "API keys of organisations in the caller's jurisdiction",
        security: SECURED,
        querystring: Type.Object(
          { orgId: Type.Optional(Type.String({ format: 'uuid' })), ...Paging },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(ApiKey) },
      },
    },
    async (request) => listApiKeysFor(rt, await callContext(rt, request), request.query),
  );
  app.post(
    '/api/v1/api-keys',
    {
      schema: {
        tags: ['admin'],
        summary: 'Issue an API key (the secret is shown once)',
        security: SECURED,
        body: ApiKeyCreate,
        response: { 201: ApiKeyIssued },
      },
    },
    async (request, reply) =>
      reply.code(201).send(await issueApiKey(rt, await callContext(rt, request), request.body)),
  );
  app.delete(
    '/api/v1/api-keys/:id',
    { schema: { tags: ['admin'], summary: 'Revoke an API key', security: SECURED, params: IdParams } },
    async (request, reply) => {
      await revokeApiKeyFor(rt, await callContext(rt, request), request.params.id);
      return reply.code(204).send();
    },
  );
}
