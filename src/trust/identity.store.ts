/** SQL for organisations, roles, users, memberships and credentials (统一账户管理). */
import { sql, type QueryExecutorProvider, type RawBuilder } from 'kysely';
import { escapeLike, withinPath } from './sql.ts';

type Db = QueryExecutorProvider;

// --- Organisations ----------------------------------------------------------------------------

export interface OrgRow {
  id: string;
  code: string;
  name: string;
  kind: 'platform' | 'operations-centre' | 'department' | 'enterprise';
  level: 'city' | 'district' | 'street' | null;
  area_code: string;
  area_path: string;
  area_level: string;
  parent_id: string | null;
  credit_code: string | null;
  categories: string[];
  services: string[];
  status: 'active' | 'disabled';
  demo: boolean;
  created_at: Date;
  updated_at: Date;
}

const orgSelect = sql`select o.*, a.path as area_path, a.level as area_level
  from trust.organisations o join trust.areas a on a.code = o.area_code`;

export async function findOrg(db: Db, id: string): Promise<OrgRow | undefined> {
  const { rows } = await sql<OrgRow>`${orgSelect} where o.id = ${id}`.execute(db);
  return rows[0];
}

export async function findOrgByCode(db: Db, code: string): Promise<OrgRow | undefined> {
  const { rows } = await sql<OrgRow>`${orgSelect} where o.code = ${code}`.execute(db);
  return rows[0];
}

export interface OrgFilter {
  kind?: string;
  level?: string;
  areaPath?: string;
  category?: string;
  parentId?: string;
  q?: string;
  status?: string;
  limit: number;
  offset: number;
}

export async function listOrgs(db: Db, filter: OrgFilter, scope: RawBuilder<boolean>): Promise<OrgRow[]> {
  const where: RawBuilder<unknown>[] = [scope];
  if (filter.kind !== undefined) where.push(sql`o.kind = ${filter.kind}`);
  if (filter.level !== undefined) where.push(sql`o.level = ${filter.level}`);
  if (filter.status !== undefined) where.push(sql`o.status = ${filter.status}`);
  if (filter.parentId !== undefined) where.push(sql`o.parent_id = ${filter.parentId}`);
  if (filter.category !== undefined) where.push(sql`${filter.category} = any(o.categories)`);
  if (filter.areaPath !== undefined) where.push(withinPath(sql`a.path`, filter.areaPath));
  if (filter.q !== undefined) where.push(sql`o.name like ${`%${escapeLike(filter.q)}%`}`);
  const { rows } = await sql<OrgRow>`${orgSelect} where ${sql.join(where, sql` and `)}
    order by a.path, o.code limit ${filter.limit} offset ${filter.offset}`.execute(db);
  return rows;
}

export interface OrgInsert {
  id: string;
  code: string;
  name: string;
  kind: OrgRow['kind'];
  level: OrgRow['level'];
  areaCode: string;
  parentId: string | null;
  creditCode: string | null;
  categories: string[];
  services: string[];
  demo: boolean;
}

export async function insertOrg(db: Db, o: OrgInsert): Promise<void> {
  await sql`insert into trust.organisations
      (id, code, name, kind, level, area_code, parent_id, credit_code, categories, services, demo)
    values (${o.id}, ${o.code}, ${o.name}, ${o.kind}, ${o.level}, ${o.areaCode}, ${o.parentId}, ${o.creditCode},
            ${o.categories}::text[], ${o.services}::text[], ${o.demo})`.execute(db);
}

export async function updateOrg(
  db: Db,
  id: string,
  patch: {
    name?: string;
    categories?: string[];
    services?: string[];
    status?: string;
    parentId?: string | null;
  },
): Promise<void> {
  const sets: RawBuilder<unknown>[] = [sql`updated_at = now()`];
  if (patch.name !== undefined) sets.push(sql`name = ${patch.name}`);
  if (patch.categories !== undefined) sets.push(sql`categories = ${patch.categories}::text[]`);
  if (patch.services !== undefined) sets.push(sql`services = ${patch.services}::text[]`);
  if (patch.status !== undefined) sets.push(sql`status = ${patch.status}`);
  if (patch.parentId !== undefined) sets.push(sql`parent_id = ${patch.parentId}`);
  await sql`update trust.organisations set ${sql.join(sets)} where id = ${id}`.execute(db);
}

/** True when `ancestorId` is `id` or above it in the organisation tree (cycle check). */
export async function isOrgAncestor(db: Db, ancestorId: string, id: string): Promise<boolean> {
  const { rows } = await sql<{ hit: boolean }>`
    with recursive up(id, parent_id, depth) as (
      select id, parent_id, 0 from trust.organisations where id = ${id}
      union all
      select o.id, o.parent_id, up.depth + 1 from trust.organisations o join up on o.id = up.parent_id
      where up.depth < 64
    )
    select exists (select 1 from up where id = ${ancestorId}) as hit`.execute(db);
  return rows[0]?.hit ?? false;
}

// --- Roles ------------------------------------------------------------------------------------

export interface RoleRow {
  code: string;
  name_zh: string;
  name_en: string;
  permissions: string[];
  system: boolean;
}

export async function listRoles(db: Db): Promise<RoleRow[]> {
  const { rows } = await sql<RoleRow>`select code, name_zh, name_en, permissions, system from trust.roles
    order by system desc, code`.execute(db);
  return rows;
}

export async function findRole(db: Db, code: string): Promise<RoleRow | undefined> {
  const { rows } = await sql<RoleRow>`select code, name_zh, name_en, permissions, system from trust.roles
    where code = ${code}`.execute(db);
  return rows[0];
}

/** Inserts or replaces a role; resolves to true when something changed. */
export async function upsertRole(db: Db, r: RoleRow): Promise<boolean> {
  const result = await sql`insert into trust.roles (code, name_zh, name_en, permissions, system)
    values (${r.code}, ${r.name_zh}, ${r.name_en}, ${r.permissions}::text[], ${r.system})
    on conflict (code) do update set name_zh = excluded.name_zh, name_en = excluded.name_en,
      permissions = excluded.permissions, system = excluded.system, updated_at = now()
    where (trust.roles.name_zh, trust.roles.name_en, trust.roles.permissions, trust.roles.system)
      is distinct from (excluded.name_zh, excluded.name_en, excluded.permissions, excluded.system)`.execute(
    db,
  );
  return Number(result.numAffectedRows ?? 0n) > 0;
}

// --- Users ------------------------------------------------------------------------------------

export interface UserRow {
  id: string;
  username: string;
  display_name: string;
  kind: 'staff' | 'inspector' | 'citizen' | 'enterprise';
  area_code: string;
  area_path: string;
  password_hash: string | null;
  password_changed_at: Date | null;
  resident_id_hash: string | null;
  resident_id_masked: string | null;
  external_subject: string | null;
  status: 'active' | 'disabled';
  token_version: number;
  failed_logins: number;
  locked_until: Date | null;
  demo: boolean;
  created_at: Date;
  updated_at: Date;
}

const userSelect = sql`select u.*, a.path as area_path from trust.users u join trust.areas a on a.code = u.area_code`;

export async function findUser(db: Db, id: string): Promise<UserRow | undefined> {
  const { rows } = await sql<UserRow>`${userSelect} where u.id = ${id}`.execute(db);
  return rows[0];
}

export async function findUserByUsername(db: Db, username: string): Promise<UserRow | undefined> {
  const { rows } = await sql<UserRow>`${userSelect} where u.username = ${username}`.execute(db);
  return rows[0];
}

export async function findUserByExternalSubject(db: Db, subject: string): Promise<UserRow | undefined> {
  const { rows } = await sql<UserRow>`${userSelect} where u.external_subject = ${subject}`.execute(db);
  return rows[0];
}

export interface UserFilter {
  kind?: string;
  status?: string;
  areaPath?: string;
  orgId?: string;
  role?: string;
  q?: string;
  limit: number;
  offset: number;
}

export async function listUsers(db: Db, filter: UserFilter, scope: RawBuilder<boolean>): Promise<UserRow[]> {
  const where: RawBuilder<unknown>[] = [scope];
  if (filter.kind !== undefined) where.push(sql`u.kind = ${filter.kind}`);
  if (filter.status !== undefined) where.push(sql`u.status = ${filter.status}`);
  if (filter.areaPath !== undefined) where.push(withinPath(sql`a.path`, filter.areaPath));
  if (filter.orgId !== undefined)
    where.push(
      sql`exists (select 1 from trust.memberships m where m.user_id = u.id and m.org_id = ${filter.orgId})`,
    );
  if (filter.role !== undefined)
    where.push(
      sql`exists (select 1 from trust.memberships m where m.user_id = u.id and m.role_code = ${filter.role})`,
    );
  if (filter.q !== undefined) {
    const like = `%${escapeLike(filter.q)}%`;
    where.push(sql`(u.username like ${like} or u.display_name like ${like})`);
  }
  const { rows } = await sql<UserRow>`${userSelect} where ${sql.join(where, sql` and `)}
    order by u.username limit ${filter.limit} offset ${filter.offset}`.execute(db);
  return rows;
}

export interface UserInsert {
  id: string;
  username: string;
  displayName: string;
  kind: UserRow['kind'];
  areaCode: string;
  passwordHash: string | null;
  residentIdHash: string | null;
  residentIdMasked: string | null;
  externalSubject: string | null;
  demo: boolean;
}

export async function insertUser(db: Db, u: UserInsert): Promise<void> {
  await sql`insert into trust.users (id, username, display_name, kind, area_code, password_hash, password_changed_at,
      resident_id_hash, resident_id_masked, external_subject, demo)
    values (${u.id}, ${u.username}, ${u.displayName}, ${u.kind}, ${u.areaCode}, ${u.passwordHash},
      ${u.passwordHash === null ? null : sql`now()`}, ${u.residentIdHash}, ${u.residentIdMasked},
      ${u.externalSubject}, ${u.demo})`.execute(db);
}

export async function userExistsWith(
  db: Db,
  args: { username?: string; residentIdHash?: string | null; externalSubject?: string | null },
): Promise<'username' | 'resident-id' | 'external-subject' | null> {
  const { rows } = await sql<{
    username: string;
    resident_id_hash: string | null;
    external_subject: string | null;
  }>`
    select username, resident_id_hash, external_subject from trust.users
    where username = ${args.username ?? null} or resident_id_hash = ${args.residentIdHash ?? null}
       or external_subject = ${args.externalSubject ?? null} limit 1`.execute(db);
  const r = rows[0];
  if (!r) return null;
  if (r.username === args.username) return 'username';
  if (args.residentIdHash && r.resident_id_hash === args.residentIdHash) return 'resident-id';
  return 'external-subject';
}

export async function updateUser(
  db: Db,
  id: string,
  patch: {
    displayName?: string;
    status?: string;
    areaCode?: string;
    passwordHash?: string;
    bumpTokenVersion?: boolean;
    externalSubject?: string | null;
  },
): Promise<void> {
  const sets: RawBuilder<unknown>[] = [sql`updated_at = now()`];
  if (patch.displayName !== undefined) sets.push(sql`display_name = ${patch.displayName}`);
  if (patch.status !== undefined) sets.push(sql`status = ${patch.status}`);
  if (patch.areaCode !== undefined) sets.push(sql`area_code = ${patch.areaCode}`);
  if (patch.externalSubject !== undefined) sets.push(sql`external_subject = ${patch.externalSubject}`);
  if (patch.passwordHash !== undefined)
    sets.push(
      sql`password_hash = ${patch.passwordHash}, password_changed_at = now(), failed_logins = 0, locked_until = null`,
    );
  if (patch.bumpTokenVersion) sets.push(sql`token_version = token_version + 1`);
  await sql`update trust.users set ${sql.join(sets)} where id = ${id}`.execute(db);
}

/** Counts a failed sign-in; locks the account for `lockSeconds` at `maxFailures`. Returns the new state. */
export async function recordLoginFailure(
  db: Db,
  id: string,
  args: { maxFailures: number; lockSeconds: number },
): Promise<{ failed_logins: number; locked_until: Date | null }> {
  const { rows } = await sql<{ failed_logins: number; locked_until: Date | null }>`
    update trust.users set
      failed_logins = failed_logins + 1,
      locked_until = case when failed_logins + 1 >= ${args.maxFailures}
                          then now() + make_interval(secs => ${args.lockSeconds}) else locked_until end
    where id = ${id} returning failed_logins, locked_until`.execute(db);
  return rows[0] ?? { failed_logins: 0, locked_until: null };
}

export async function recordLoginSuccess(db: Db, id: string): Promise<void> {
  await sql`update trust.users set failed_logins = 0, locked_until = null where id = ${id}`.execute(db);
}

export async function countDemoUsers(db: Db): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*) as n from trust.users where demo`.execute(db);
  return rows[0]?.n ?? 0;
}

// --- Memberships and the actor's grants -------------------------------------------------------

export interface MembershipRow {
  id: string;
  user_id: string;
  org_id: string;
  org_code: string;
  org_name: string;
  org_status: string;
  area_code: string;
  area_path: string;
  role_code: string;
  permissions: string[];
  created_at: Date;
}

const membershipSelect = sql`select m.id, m.user_id, m.org_id, o.code as org_code, o.name as org_name,
    o.status as org_status, o.area_code, a.path as area_path, m.role_code, r.permissions, m.created_at
  from trust.memberships m
  join trust.organisations o on o.id = m.org_id
  join trust.areas a on a.code = o.area_code
  join trust.roles r on r.code = m.role_code`;

export async function membershipsOf(db: Db, userId: string): Promise<MembershipRow[]> {
  const { rows } = await sql<MembershipRow>`${membershipSelect} where m.user_id = ${userId}
    order by m.created_at, m.id`.execute(db);
  return rows;
}

export async function findMembership(db: Db, id: string): Promise<MembershipRow | undefined> {
  const { rows } = await sql<MembershipRow>`${membershipSelect} where m.id = ${id}`.execute(db);
  return rows[0];
}

export async function insertMembership(
  db: Db,
  m: { id: string; userId: string; orgId: string; role: string },
): Promise<boolean> {
  const result = await sql`insert into trust.memberships (id, user_id, org_id, role_code)
    values (${m.id}, ${m.userId}, ${m.orgId}, ${m.role}) on conflict (user_id, org_id, role_code) do nothing`.execute(
    db,
  );
  return Number(result.numAffectedRows ?? 0n) > 0;
}

export async function deleteMembership(db: Db, id: string): Promise<void> {
  await sql`delete from trust.memberships where id = ${id}`.execute(db);
}

// --- Refresh tokens ---------------------------------------------------------------------------

export interface RefreshRow {
  id: string;
  family_id: string;
  user_id: string;
  expires_at: Date;
  used_at: Date | null;
  revoked_at: Date | null;
}

export async function insertRefreshToken(
  db: Db,
  t: { id: string; familyId: string; userId: string; hash: string; ttlSeconds: number },
): Promise<void> {
  await sql`insert into trust.refresh_tokens (id, family_id, user_id, token_hash, expires_at)
    values (${t.id}, ${t.familyId}, ${t.userId}, ${t.hash}, now() + make_interval(secs => ${t.ttlSeconds}))`.execute(
    db,
  );
}

/** The token with this hash, locked for the rest of the transaction (rotation is single-use). */
export async function takeRefreshToken(db: Db, hash: string): Promise<RefreshRow | undefined> {
  const { rows } = await sql<RefreshRow>`select id, family_id, user_id, expires_at, used_at, revoked_at
    from trust.refresh_tokens where token_hash = ${hash} for update`.execute(db);
  return rows[0];
}

export async function markRefreshUsed(db: Db, id: string): Promise<void> {
  await sql`update trust.refresh_tokens set used_at = now() where id = ${id}`.execute(db);
}

export async function revokeRefreshFamily(db: Db, familyId: string): Promise<void> {
  await sql`update trust.refresh_tokens set revoked_at = now() where family_id = ${familyId} and revoked_at is null`.execute(
    db,
  );
}

export async function revokeRefreshTokensOf(db: Db, userId: string): Promise<void> {
  await sql`update trust.refresh_tokens set revoked_at = now() where user_id = ${userId} and revoked_at is null`.execute(
    db,
  );
}

// --- API keys ---------------------------------------------------------------------------------

export interface ApiKeyRow {
  id: string;
  prefix: string;
  secret_hash: string;
  name: string;
  org_id: string;
  org_code: string;
  org_status: string;
  area_code: string;
  area_path: string;
  permissions: string[];
  created_by: string | null;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
  created_at: Date;
}

const apiKeySelect = sql`select k.*, o.code as org_code, o.status as org_status, o.area_code, a.path as area_path
  from trust.api_keys k join trust.organisations o on o.id = k.org_id join trust.areas a on a.code = o.area_code`;

export async function findApiKeyByPrefix(db: Db, prefix: string): Promise<ApiKeyRow | undefined> {
  const { rows } = await sql<ApiKeyRow>`${apiKeySelect} where k.prefix = ${prefix}`.execute(db);
  return rows[0];
}

export async function findApiKey(db: Db, id: string): Promise<ApiKeyRow | undefined> {
  const { rows } = await sql<ApiKeyRow>`${apiKeySelect} where k.id = ${id}`.execute(db);
  return rows[0];
}

export async function listApiKeys(
  db: Db,
  filter: { orgId?: string; limit: number; offset: number },
  scope: RawBuilder<boolean>,
): Promise<ApiKeyRow[]> {
  const org = filter.orgId === undefined ? sql`true` : sql`k.org_id = ${filter.orgId}`;
  const { rows } = await sql<ApiKeyRow>`${apiKeySelect} where ${scope} and ${org}
    order by k.created_at desc, k.id limit ${filter.limit} offset ${filter.offset}`.execute(db);
  return rows;
}

export async function insertApiKey(
  db: Db,
  k: {
    id: string;
    prefix: string;
    secretHash: string;
    name: string;
    orgId: string;
    permissions: string[];
    createdBy: string | null;
    expiresAt: string | null;
  },
): Promise<void> {
  await sql`insert into trust.api_keys (id, prefix, secret_hash, name, org_id, permissions, created_by, expires_at)
    values (${k.id}, ${k.prefix}, ${k.secretHash}, ${k.name}, ${k.orgId}, ${k.permissions}::text[], ${k.createdBy},
            ${k.expiresAt}::timestamptz)`.execute(db);
}

export async function revokeApiKey(db: Db, id: string): Promise<void> {
  await sql`update trust.api_keys set revoked_at = now() where id = ${id} and revoked_at is null`.execute(db);
}

/** Notes a key's use, at most once a minute per key (a write per request would be wasteful). */
export async function touchApiKey(db: Db, id: string): Promise<void> {
  await sql`update trust.api_keys set last_used_at = now()
    where id = ${id} and (last_used_at is null or last_used_at < now() - interval '1 minute')`.execute(db);
}
