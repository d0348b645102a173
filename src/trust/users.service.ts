/**
 * Users, memberships, roles and API keys (统一账户管理). Every method authorizes first and audits
 * in the transaction of its change; reading a user's record (personal data) is audited too.
 * Nobody grants what they do not hold: a role or key's permissions must all be held by the
 * caller within the target organisation's jurisdiction.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import {
  AppError,
  assertValid,
  checkResidentId,
  Errors,
  maskResidentId,
  type Database,
} from '../kernel/index.ts';
import { audited, recordAudit } from './audit.service.ts';
import type { TrustRuntime } from './auth.service.ts';
import {
  authorize,
  can,
  jurisdictionFilter,
  permissionsAt,
  requireSignedIn,
  type Actor,
  type CallContext,
} from './authz.ts';
import { hashPassword, newApiKey, passwordProblems, residentIdHash, verifyPassword } from './credentials.ts';
import { TrustErrors } from './errors.ts';
import type {
  ApiKey,
  ApiKeyCreate,
  Role,
  RoleCreate,
  RolePatch,
  User,
  UserCreate,
  UserPatch,
  UserQuery,
} from './identity.schema.ts';
import {
  deleteMembership,
  findApiKey,
  findMembership,
  findOrg,
  findRole,
  findUser,
  insertApiKey,
  insertMembership,
  insertUser,
  listApiKeys,
  listRoles,
  listUsers,
  membershipsOf,
  revokeApiKey,
  revokeRefreshTokensOf,
  updateUser,
  upsertRole,
  userExistsWith,
  type ApiKeyRow,
  type MembershipRow,
  type RoleRow,
  type UserRow,
} from './identity.store.ts';
import { isUniqueViolation, requireArea } from './orgs.service.ts';
import { isPermission, P } from './permissions.ts';

const iso = (d: Date | null) => (d ? d.toISOString() : null);

function presentMembership(m: MembershipRow) {
  return {
    id: m.id,
    orgId: m.org_id,
    orgCode: m.org_code,
    orgName: m.org_name,
    areaCode: m.area_code,
    role: m.role_code,
    createdAt: m.created_at.toISOString(),
  };
}

export function presentUser(u: UserRow, memberships?: MembershipRow[]): User {
  return {
    id: u.id,
    username: u.username,
    displayName: u.display_name,
    kind: u.kind,
    areaCode: u.area_code,
    residentIdMasked: u.resident_id_masked,
    externalSubject: u.external_subject,
    status: u.status,
    locked: u.locked_until !== null && u.locked_until.getTime() > Date.now(),
    demo: u.demo,
    createdAt: u.created_at.toISOString(),
    updatedAt: u.updated_at.toISOString(),
    ...(memberships && { memberships: memberships.map(presentMembership) }),
  };
}

const presentRole = (r: RoleRow): Role => ({
  code: r.code,
  nameZh: r.name_zh,
  nameEn: r.name_en,
  permissions: r.permissions,
  system: r.system,
});

const presentApiKey = (k: ApiKeyRow): ApiKey => ({
  id: k.id,
  prefix: k.prefix,
  name: k.name,
  orgId: k.org_id,
  permissions: k.permissions,
  expiresAt: iso(k.expires_at),
  revokedAt: iso(k.revoked_at),
  lastUsedAt: iso(k.last_used_at),
  createdAt: k.created_at.toISOString(),
});

const unprocessable = (detail: string) => new AppError(Errors.unprocessable, { detail });

function assertPasswordPolicy(rt: TrustRuntime, password: string, username: string): void {
  const problems = passwordProblems(password, { minLength: rt.config.passwordMinLength, username });
  if (problems.length > 0)
    throw new AppError(TrustErrors['weak-password'], {
      detail: `The password needs ${problems.join('; ')}`,
      extensions: { problems },
    });
}

/** Refuses unless every permission in `wanted` is held by the actor within `path`. */
function assertCanGrant(actor: Actor, wanted: readonly string[], path: string | null): void {
  if (actor.kind === 'system') return;
  const held = permissionsAt(actor, path);
  const missing = wanted.filter((p) => !held.has(p));
  if (missing.length > 0)
    throw new AppError(TrustErrors['privilege-escalation'], {
      detail: `You do not hold ${missing.join(', ')} in that jurisdiction`,
      extensions: { missing },
    });
}

/**
 * Refuses changes to an account more powerful than the caller: whoever resets a password, links an
 * external identity or disables an account could act as its holder, so every grant the account
 * holds must lie within the caller's `users.manage` jurisdiction and carry no permission the caller
 * lacks there.
 */
function assertOutranks(actor: Actor, target: MembershipRow[]): void {
  if (actor.kind === 'system') return;
  for (const m of target) {
    if (!can(actor, P['users.manage'], { areaPath: m.area_path }))
      throw new AppError(TrustErrors['privilege-escalation'], {
        detail: `The account holds a role in ${m.org_code}, outside your jurisdiction`,
      });
    assertCanGrant(actor, m.permissions, m.area_path);
  }
}

/** A user the caller may see with `permission` (their own record always for reading); 404 otherwise. */
async function visibleUser(
  database: Database,
  ctx: CallContext,
  id: string,
  permission: string,
): Promise<UserRow> {
  const row = await findUser(database.db, id);
  authorize(
    ctx.actor,
    permission,
    { areaPath: row?.area_path ?? null, ownerUserId: row?.id ?? null },
    { visibleWith: P['users.read'], what: 'user' },
  );
  if (!row) throw new AppError(Errors['not-found'], { detail: 'No such user' });
  return row;
}

// --- Users ------------------------------------------------------------------------------------

/** One user with their memberships; a read of personal data, so it is audited. */
export async function getUser(rt: TrustRuntime, ctx: CallContext, id: string): Promise<User> {
  const { database } = rt;
  requireSignedIn(ctx.actor);
  return audited(database, ctx, { action: 'user.read', resourceType: 'user', resourceId: id }, async () => {
    const user = await visibleUser(database, ctx, id, P['users.read']);
    return database.transact(async (trx) => {
      const memberships = await membershipsOf(trx, id);
      await recordAudit(trx, ctx, {
        action: 'user.read',
        resourceType: 'user',
        resourceId: id,
        area: user.area_code,
      });
      return presentUser(user, memberships);
    });
  });
}

/** Users in the caller's jurisdiction (by the user's area), filtered in SQL; audited. */
export async function listUsersFor(rt: TrustRuntime, ctx: CallContext, query: UserQuery): Promise<User[]> {
  const { database } = rt;
  requireSignedIn(ctx.actor);
  const areaPath = query.area === undefined ? undefined : (await requireArea(database, query.area)).path;
  return database.transact(async (trx) => {
    const rows = await listUsers(
      trx,
      {
        ...(query.kind && { kind: query.kind }),
        ...(query.status && { status: query.status }),
        ...(query.orgId && { orgId: query.orgId }),
        ...(query.role && { role: query.role }),
        ...(query.q && { q: query.q }),
        ...(areaPath !== undefined && { areaPath }),
        limit: query.limit,
        offset: query.offset,
      },
      jurisdictionFilter(ctx.actor, P['users.read'], sql`a.path`),
    );
    await recordAudit(trx, ctx, {
      action: 'user.list',
      resourceType: 'user',
      details: { query: { ...query }, returned: rows.length },
    });
    return rows.map((r) => presentUser(r));
  });
}

/** Creates a user in the caller's jurisdiction, optionally with memberships. */
export async function createUser(rt: TrustRuntime, ctx: CallContext, input: UserCreate): Promise<User> {
  const { database } = rt;
  requireSignedIn(ctx.actor);
  const area = await requireArea(database, input.areaCode);
  const username = input.username.toLowerCase();
  return audited(
    database,
    ctx,
    { action: 'user.create', resourceType: 'user', area: area.code, details: { username } },
    async () => {
      if (!can(ctx.actor, P['users.manage'], { areaPath: area.path }))
        throw new AppError(Errors.forbidden, {
          detail: `Area ${area.code} is outside your jurisdiction for ${P['users.manage']}`,
        });
      let resident: { hash: string; masked: string } | null = null;
      if (input.residentId !== undefined) {
        const id = assertValid(checkResidentId(input.residentId), Errors['invalid-resident-id']);
        resident = { hash: residentIdHash(rt.keys, id.id), masked: maskResidentId(id.id) };
      }
      if (input.password !== undefined) assertPasswordPolicy(rt, input.password, username);
      const memberships = await resolveMemberships(database, ctx, input.memberships ?? []);
      const taken = await userExistsWith(database.db, {
        username,
        residentIdHash: resident?.hash ?? null,
        externalSubject: input.externalSubject ?? null,
      });
      if (taken)
        throw new AppError(TrustErrors['duplicate-user'], {
          detail: `A user with this ${taken} already exists`,
        });
      const passwordHash = input.password === undefined ? null : await hashPassword(input.password);
      const id = randomUUID();
      try {
        await database.transact(async (trx) => {
          await insertUser(trx, {
            id,
            username,
            displayName: input.displayName,
            kind: input.kind,
            areaCode: area.code,
            passwordHash,
            residentIdHash: resident?.hash ?? null,
            residentIdMasked: resident?.masked ?? null,
            externalSubject: input.externalSubject ?? null,
            demo: false,
          });
          for (const m of memberships)
            await insertMembership(trx, { id: randomUUID(), userId: id, orgId: m.orgId, role: m.role });
          await recordAudit(trx, ctx, {
            action: 'user.create',
            resourceType: 'user',
            resourceId: id,
            area: area.code,
            details: {
              username,
              kind: input.kind,
              memberships: memberships.map((m) => ({ org: m.orgId, role: m.role })),
            },
          });
        });
      } catch (e) {
        if (isUniqueViolation(e))
          throw new AppError(TrustErrors['duplicate-user'], {
            detail: 'A user with this identity already exists',
          });
        throw e;
      }
      return presentUser((await findUser(database.db, id)) as UserRow, await membershipsOf(database.db, id));
    },
  );
}

/** Checks requested memberships: organisation visible and manageable, role grantable there. */
async function resolveMemberships(
  database: Database,
  ctx: CallContext,
  wanted: { orgId: string; role: string }[],
): Promise<{ orgId: string; role: string; orgArea: string }[]> {
  const out: { orgId: string; role: string; orgArea: string }[] = [];
  for (const w of wanted) {
    const org = await findOrg(database.db, w.orgId);
    authorize(
      ctx.actor,
      P['users.manage'],
      { areaPath: org?.area_path ?? null },
      { visibleWith: P['orgs.read'], what: 'organisation' },
    );
    if (!org) throw new AppError(Errors['not-found'], { detail: 'No such organisation' });
    const role = await findRole(database.db, w.role);
    if (!role) throw unprocessable(`No role ${w.role}`);
    assertCanGrant(ctx.actor, role.permissions, org.area_path);
    out.push({ orgId: org.id, role: role.code, orgArea: org.area_code });
  }
  return out;
}

/** Changes a user: name, area, status (disabling ends their sessions), password, external link. */
export async function patchUser(
  rt: TrustRuntime,
  ctx: CallContext,
  id: string,
  patch: UserPatch,
): Promise<User> {
  const { database } = rt;
  requireSignedIn(ctx.actor);
  return audited(database, ctx, { action: 'user.update', resourceType: 'user', resourceId: id }, async () => {
    const user = await visibleUser(database, ctx, id, P['users.manage']);
    assertOutranks(ctx.actor, await membershipsOf(database.db, id));
    if (patch.areaCode !== undefined) {
      const area = await requireArea(database, patch.areaCode);
      if (!can(ctx.actor, P['users.manage'], { areaPath: area.path }))
        throw new AppError(Errors.forbidden, { detail: `Area ${area.code} is outside your jurisdiction` });
    }
    if (patch.password !== undefined) assertPasswordPolicy(rt, patch.password, user.username);
    const passwordHash = patch.password === undefined ? undefined : await hashPassword(patch.password);
    const endSessions = patch.status === 'disabled' || passwordHash !== undefined;
    try {
      await database.transact(async (trx) => {
        await updateUser(trx, id, {
          ...(patch.displayName !== undefined && { displayName: patch.displayName }),
          ...(patch.areaCode !== undefined && { areaCode: patch.areaCode }),
          ...(patch.status !== undefined && { status: patch.status }),
          ...(patch.externalSubject !== undefined && { externalSubject: patch.externalSubject }),
          ...(passwordHash !== undefined && { passwordHash }),
          bumpTokenVersion: endSessions,
        });
        if (endSessions) await revokeRefreshTokensOf(trx, id);
        const { password, ...visible } = patch;
        await recordAudit(trx, ctx, {
          action: 'user.update',
          resourceType: 'user',
          resourceId: id,
          area: user.area_code,
          details: { changes: visible, passwordReset: password !== undefined },
        });
      });
    } catch (e) {
      if (isUniqueViolation(e))
        throw new AppError(TrustErrors['duplicate-user'], {
          detail: 'That external identity is linked to another user',
        });
      throw e;
    }
    return presentUser((await findUser(database.db, id)) as UserRow, await membershipsOf(database.db, id));
  });
}

/** Changes the caller's own password (the current one is required); ends other sessions. */
export async function changeOwnPassword(
  rt: TrustRuntime,
  ctx: CallContext,
  input: { currentPassword: string; newPassword: string },
): Promise<void> {
  const { database } = rt;
  requireSignedIn(ctx.actor);
  const user = ctx.actor.userId === null ? undefined : await findUser(database.db, ctx.actor.userId);
  if (!user) throw new AppError(Errors.forbidden, { detail: 'Only a signed-in user has a password' });
  if (!(await verifyPassword(input.currentPassword, user.password_hash)))
    throw new AppError(TrustErrors['invalid-credentials']);
  assertPasswordPolicy(rt, input.newPassword, user.username);
  const passwordHash = await hashPassword(input.newPassword);
  await database.transact(async (trx) => {
    await updateUser(trx, user.id, { passwordHash, bumpTokenVersion: true });
    await revokeRefreshTokensOf(trx, user.id);
    await recordAudit(trx, ctx, {
      action: 'user.password',
      resourceType: 'user',
      resourceId: user.id,
      area: user.area_code,
    });
  });
}

/** The caller: their user record (if a user) and their grants. */
export async function whoAmI(rt: TrustRuntime, ctx: CallContext) {
  requireSignedIn(ctx.actor);
  const user = ctx.actor.userId === null ? undefined : await findUser(rt.database.db, ctx.actor.userId);
  return {
    kind: ctx.actor.kind,
    id: ctx.actor.id,
    name: ctx.actor.name,
    user: user ? presentUser(user) : null,
    grants: ctx.actor.grants.map((g) => ({
      orgId: g.orgId,
      orgCode: g.orgCode,
      role: g.role,
      scope: g.scope,
      permissions: [...g.permissions].sort(),
    })),
  };
}

// --- Memberships ------------------------------------------------------------------------------

/** Grants a user a role in an organisation. */
export async function addMembership(
  rt: TrustRuntime,
  ctx: CallContext,
  userId: string,
  input: { orgId: string; role: string },
): Promise<User> {
  const { database } = rt;
  requireSignedIn(ctx.actor);
  return audited(
    database,
    ctx,
    { action: 'membership.create', resourceType: 'user', resourceId: userId, details: { ...input } },
    async () => {
      const user = await visibleUser(database, ctx, userId, P['users.manage']);
      const [m] = await resolveMemberships(database, ctx, [input]);
      if (!m) throw new Error('unreachable');
      await database.transact(async (trx) => {
        const created = await insertMembership(trx, {
          id: randomUUID(),
          userId,
          orgId: m.orgId,
          role: m.role,
        });
        if (!created)
          throw new AppError(Errors.conflict, { detail: 'The user already holds this role there' });
        await recordAudit(trx, ctx, {
          action: 'membership.create',
          resourceType: 'user',
          resourceId: userId,
          area: m.orgArea,
          details: { org: m.orgId, role: m.role, user: user.username },
        });
      });
      return presentUser(
        (await findUser(database.db, userId)) as UserRow,
        await membershipsOf(database.db, userId),
      );
    },
  );
}

/** Removes a membership. */
export async function removeMembership(
  rt: TrustRuntime,
  ctx: CallContext,
  membershipId: string,
): Promise<void> {
  const { database } = rt;
  requireSignedIn(ctx.actor);
  await audited(
    database,
    ctx,
    { action: 'membership.delete', resourceType: 'membership', resourceId: membershipId },
    async () => {
      const m = await findMembership(database.db, membershipId);
      authorize(
        ctx.actor,
        P['users.manage'],
        { areaPath: m?.area_path ?? null },
        { visibleWith: P['orgs.read'], what: 'membership' },
      );
      if (!m) throw new AppError(Errors['not-found'], { detail: 'No such membership' });
      await database.transact(async (trx) => {
        await deleteMembership(trx, membershipId);
        await recordAudit(trx, ctx, {
          action: 'membership.delete',
          resourceType: 'user',
          resourceId: m.user_id,
          area: m.area_code,
          details: { org: m.org_id, role: m.role_code },
        });
      });
    },
  );
}

// --- Roles ------------------------------------------------------------------------------------

/** Every role (a catalogue: any signed-in caller may read it). */
export async function listRolesFor(rt: TrustRuntime, ctx: CallContext): Promise<Role[]> {
  requireSignedIn(ctx.actor);
  return (await listRoles(rt.database.db)).map(presentRole);
}

/** Roles are city-wide: changing them needs the permission at the root (403 otherwise: the catalogue is public). */
function assertCityWide(actor: Actor, permission: string): void {
  if (!can(actor, permission, { areaPath: null }))
    throw new AppError(Errors.forbidden, { detail: `Needs city-wide ${permission}` });
}

function assertPermissionsKnown(permissions: readonly string[]): void {
  const unknown = permissions.filter((p) => !isPermission(p));
  if (unknown.length > 0)
    throw new AppError(TrustErrors['unknown-permission'], {
      detail: `Unknown permission ${unknown.join(', ')}`,
      extensions: { unknown },
    });
}

/** Creates a custom role (city-wide `roles.manage`; no permission the caller lacks). */
export async function createRole(rt: TrustRuntime, ctx: CallContext, input: RoleCreate): Promise<Role> {
  const { database } = rt;
  requireSignedIn(ctx.actor);
  return audited(
    database,
    ctx,
    { action: 'role.create', resourceType: 'role', resourceId: input.code },
    async () => {
      assertCityWide(ctx.actor, P['roles.manage']);
      assertPermissionsKnown(input.permissions);
      assertCanGrant(ctx.actor, input.permissions, null);
      if (await findRole(database.db, input.code))
        throw new AppError(Errors.conflict, { detail: `Role ${input.code} exists` });
      const row: RoleRow = {
        code: input.code,
        name_zh: input.nameZh,
        name_en: input.nameEn,
        permissions: [...input.permissions].sort(),
        system: false,
      };
      await database.transact(async (trx) => {
        await upsertRole(trx, row);
        await recordAudit(trx, ctx, {
          action: 'role.create',
          resourceType: 'role',
          resourceId: row.code,
          details: { permissions: row.permissions },
        });
      });
      return presentRole(row);
    },
  );
}

/** Changes a custom role; system roles are the platform's and refuse changes. */
export async function patchRole(
  rt: TrustRuntime,
  ctx: CallContext,
  code: string,
  patch: RolePatch,
): Promise<Role> {
  const { database } = rt;
  requireSignedIn(ctx.actor);
  return audited(
    database,
    ctx,
    { action: 'role.update', resourceType: 'role', resourceId: code },
    async () => {
      assertCityWide(ctx.actor, P['roles.manage']);
      const role = await findRole(database.db, code);
      if (!role) throw new AppError(Errors['not-found'], { detail: `No role ${code}` });
      if (role.system) throw new AppError(TrustErrors['system-role'], { detail: `${code} is a system role` });
      if (patch.permissions) {
        assertPermissionsKnown(patch.permissions);
        assertCanGrant(ctx.actor, patch.permissions, null);
      }
      const row: RoleRow = {
        ...role,
        ...(patch.nameZh !== undefined && { name_zh: patch.nameZh }),
        ...(patch.nameEn !== undefined && { name_en: patch.nameEn }),
        ...(patch.permissions !== undefined && { permissions: [...patch.permissions].sort() }),
      };
      await database.transact(async (trx) => {
        await upsertRole(trx, row);
        await recordAudit(trx, ctx, {
          action: 'role.update',
          resourceType: 'role',
          resourceId: code,
          details: { changes: patch },
        });
      });
      return presentRole(row);
    },
  );
}

// --- API keys ---------------------------------------------------------------------------------

/** Issues an API key for an organisation; the secret is returned once. */
export async function issueApiKey(
  rt: TrustRuntime,
  ctx: CallContext,
  input: ApiKeyCreate,
): Promise<ApiKey & { key: string }> {
  const { database } = rt;
  requireSignedIn(ctx.actor);
  return audited(
    database,
    ctx,
    { action: 'apikey.create', resourceType: 'api-key', details: { org: input.orgId } },
    async () => {
      const org = await findOrg(database.db, input.orgId);
      authorize(
        ctx.actor,
        P['apikeys.manage'],
        { areaPath: org?.area_path ?? null },
        { visibleWith: P['orgs.read'], what: 'organisation' },
      );
      if (!org) throw new AppError(Errors['not-found'], { detail: 'No such organisation' });
      assertPermissionsKnown(input.permissions);
      assertCanGrant(ctx.actor, input.permissions, org.area_path);
      if (input.expiresAt !== undefined && Date.parse(input.expiresAt) <= Date.now())
        throw unprocessable('expiresAt must be in the future');
      const key = newApiKey();
      const id = randomUUID();
      await database.transact(async (trx) => {
        await insertApiKey(trx, {
          id,
          prefix: key.prefix,
          secretHash: key.secretHash,
          name: input.name,
          orgId: org.id,
          permissions: [...input.permissions].sort(),
          createdBy: ctx.actor.userId,
          expiresAt: input.expiresAt ?? null,
        });
        await recordAudit(trx, ctx, {
          action: 'apikey.create',
          resourceType: 'api-key',
          resourceId: id,
          area: org.area_code,
          details: { name: input.name, prefix: key.prefix, org: org.code, permissions: input.permissions },
        });
      });
      return { ...presentApiKey((await findApiKey(database.db, id)) as ApiKeyRow), key: key.key };
    },
  );
}

/** API keys of organisations in the caller's jurisdiction (never their secrets). */
export async function listApiKeysFor(
  rt: TrustRuntime,
  ctx: CallContext,
  query: { orgId?: string; limit: number; offset: number },
): Promise<ApiKey[]> {
  requireSignedIn(ctx.actor);
  const rows = await listApiKeys(
    rt.database.db,
    query,
    jurisdictionFilter(ctx.actor, P['apikeys.manage'], sql`a.path`),
  );
  return rows.map(presentApiKey);
}

/** Revokes an API key at once (idempotent). */
export async function revokeApiKeyFor(rt: TrustRuntime, ctx: CallContext, id: string): Promise<void> {
  const { database } = rt;
  requireSignedIn(ctx.actor);
  await audited(
    database,
    ctx,
    { action: 'apikey.revoke', resourceType: 'api-key', resourceId: id },
    async () => {
      const key = await findApiKey(database.db, id);
      authorize(
        ctx.actor,
        P['apikeys.manage'],
        { areaPath: key?.area_path ?? null },
        { visibleWith: P['orgs.read'], what: 'API key' },
      );
      if (!key) throw new AppError(Errors['not-found'], { detail: 'No such API key' });
      await database.transact(async (trx) => {
        await revokeApiKey(trx, id);
        await recordAudit(trx, ctx, {
          action: 'apikey.revoke',
          resourceType: 'api-key',
          resourceId: id,
          area: key.area_code,
          details: { prefix: key.prefix },
        });
      });
    },
  );
}
