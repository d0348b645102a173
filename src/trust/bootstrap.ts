/**
 * The first administrator of a production deployment (`pujiang admin create`): the platform
 * operator organisation at the root area, and a user holding `platform-admin` there. Goes through
 * the same services (validation, password policy, audit) as the admin API, acting as the system.
 */
import { sql } from 'kysely';
import { AppError, Errors } from '../kernel/index.ts';
import type { TrustRuntime } from './auth.service.ts';
import { systemContext } from './authz.ts';
import type { User } from './identity.schema.ts';
import { findOrgByCode } from './identity.store.ts';
import { createOrg } from './orgs.service.ts';
import { createUser } from './users.service.ts';

const PLATFORM_ORG = 'pujiang-platform';

/** Creates a platform administrator (and the platform organisation on first use). */
export async function bootstrapAdmin(
  rt: TrustRuntime,
  input: { username: string; displayName: string; password: string },
): Promise<User> {
  const ctx = systemContext('bootstrap administrator');
  let org = await findOrgByCode(rt.database.db, PLATFORM_ORG);
  if (!org) {
    const { rows } = await sql<{
      code: string;
    }>`select code from trust.areas where depth = 0 limit 1`.execute(rt.database.db);
    const root = rows[0];
    if (!root)
      throw new AppError(Errors.conflict, {
        detail: 'No areas are loaded yet: load the city areas first (pujiang areas load)',
      });
    await createOrg(rt.database, ctx, {
      code: PLATFORM_ORG,
      name: '浦江平台运营中心',
      kind: 'platform',
      areaCode: root.code,
    });
    org = await findOrgByCode(rt.database.db, PLATFORM_ORG);
  }
  if (!org) throw new Error('platform organisation missing after creation');
  return createUser(rt, ctx, {
    username: input.username,
    displayName: input.displayName,
    kind: 'staff',
    areaCode: org.area_code,
    password: input.password,
    memberships: [{ orgId: org.id, role: 'platform-admin' }],
  });
}
