/**
 * Organisations (组织): departments (委办局), operations centres (城运中心) and enterprises, each
 * acting within a jurisdiction. Every method authorizes first, audits its change in the same
 * transaction, and hides organisations outside the caller's jurisdiction (404).
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import {
  AppError,
  assertValid,
  checkCreditCode,
  Errors,
  referenceData,
  type Database,
} from '../kernel/index.ts';
import { findArea } from './areas.store.ts';
import { audited, recordAudit } from './audit.service.ts';
import { authorize, can, jurisdictionFilter, requireSignedIn, type CallContext } from './authz.ts';
import { TrustErrors } from './errors.ts';
import type { OrgCreate, OrgPatch, OrgQuery, Organisation } from './identity.schema.ts';
import { findOrg, insertOrg, isOrgAncestor, listOrgs, updateOrg, type OrgRow } from './identity.store.ts';
import { P } from './permissions.ts';

export function presentOrg(row: OrgRow): Organisation {
  return {
    id: row.id,
    code: row.code,
    name: row.name,
    kind: row.kind,
    level: row.level,
    areaCode: row.area_code,
    parentId: row.parent_id,
    creditCode: row.credit_code,
    categories: row.categories,
    services: row.services,
    status: row.status,
    demo: row.demo,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

const unprocessable = (detail: string) => new AppError(Errors.unprocessable, { detail });

/** Checks that every category names a class in the reference classification. */
function assertCategories(categories: readonly string[]): void {
  const ref = referenceData().categories;
  for (const c of categories) {
    const [kind, code] = c.split(':');
    if (!(ref.get(code ?? '') ?? []).some((k) => k.kind === kind))
      throw unprocessable(`Unknown incident category ${c}: not in the urban-management classification`);
  }
}

/** An area by code for an input reference; 422 when it does not exist. */
export async function requireArea(
  database: Database,
  code: string,
): Promise<{ code: string; path: string; level: string }> {
  const area = await findArea(database.db, code, false);
  if (!area) throw unprocessable(`No area ${code}`);
  return area;
}

/** An organisation the caller may see with `permission`; 404 otherwise. */
async function visibleOrg(
  database: Database,
  ctx: CallContext,
  id: string,
  permission: string,
): Promise<OrgRow> {
  const row = await findOrg(database.db, id);
  authorize(
    ctx.actor,
    permission,
    { areaPath: row?.area_path ?? null },
    { visibleWith: P['orgs.read'], what: 'organisation' },
  );
  if (!row) throw new AppError(Errors['not-found'], { detail: 'No such organisation' });
  return row;
}

/** One organisation. */
export async function getOrg(database: Database, ctx: CallContext, id: string): Promise<Organisation> {
  requireSignedIn(ctx.actor);
  return presentOrg(await visibleOrg(database, ctx, id, P['orgs.read']));
}

/** Organisations in the caller's jurisdiction, filtered (by SQL, not after). */
export async function listOrganisations(
  database: Database,
  ctx: CallContext,
  query: OrgQuery,
): Promise<Organisation[]> {
  requireSignedIn(ctx.actor);
  const areaPath = query.area === undefined ? undefined : (await requireArea(database, query.area)).path;
  const rows = await listOrgs(
    database.db,
    {
      ...(query.kind && { kind: query.kind }),
      ...(query.level && { level: query.level }),
      ...(query.status && { status: query.status }),
      ...(query.category && { category: query.category }),
      ...(query.parentId && { parentId: query.parentId }),
      ...(query.q && { q: query.q }),
      ...(areaPath !== undefined && { areaPath }),
      limit: query.limit,
      offset: query.offset,
    },
    jurisdictionFilter(ctx.actor, P['orgs.read'], sql`a.path`),
  );
  return rows.map(presentOrg);
}

/** Creates an organisation inside the caller's jurisdiction. */
export async function createOrg(
  database: Database,
  ctx: CallContext,
  input: OrgCreate,
): Promise<Organisation> {
  requireSignedIn(ctx.actor);
  const area = await requireArea(database, input.areaCode);
  return audited(
    database,
    ctx,
    { action: 'org.create', resourceType: 'organisation', area: area.code },
    async () => {
      if (!can(ctx.actor, P['orgs.manage'], { areaPath: area.path }))
        throw new AppError(Errors.forbidden, {
          detail: `Area ${area.code} is outside your jurisdiction for ${P['orgs.manage']}`,
        });
      let creditCode: string | null = null;
      let level = input.level ?? null;
      if (input.kind === 'enterprise') {
        if (input.creditCode === undefined)
          throw unprocessable('An enterprise needs its unified social credit code');
        if (level !== null) throw unprocessable('An enterprise has no administrative level');
        creditCode = assertValid(checkCreditCode(input.creditCode), Errors['invalid-credit-code']).code;
      } else {
        if (input.creditCode !== undefined) throw unprocessable('Only enterprises carry a credit code here');
        level ??=
          area.level === 'city' || area.level === 'district' || area.level === 'street' ? area.level : null;
        if (level === null || level !== area.level)
          throw unprocessable(
            `A ${input.kind} at ${input.level ?? '?'} level needs an area of that level; ${area.code} is a ${area.level}`,
          );
      }
      assertCategories(input.categories ?? []);
      if (input.parentId !== undefined) await visibleOrg(database, ctx, input.parentId, P['orgs.read']);
      const id = randomUUID();
      try {
        await database.transact(async (trx) => {
          await insertOrg(trx, {
            id,
            code: input.code,
            name: input.name,
            kind: input.kind,
            level,
            areaCode: area.code,
            parentId: input.parentId ?? null,
            creditCode,
            categories: input.categories ?? [],
            services: input.services ?? [],
            demo: false,
          });
          await recordAudit(trx, ctx, {
            action: 'org.create',
            resourceType: 'organisation',
            resourceId: id,
            area: area.code,
            details: { code: input.code, name: input.name, kind: input.kind, level },
          });
        });
      } catch (e) {
        if (isUniqueViolation(e))
          throw new AppError(TrustErrors['duplicate-organisation'], {
            detail: `Code ${input.code} or its credit code is taken`,
          });
        throw e;
      }
      return getOrg(database, ctx, id);
    },
  );
}

/** Changes an organisation's name, parent, responsibilities or status. */
export async function patchOrg(
  database: Database,
  ctx: CallContext,
  id: string,
  patch: OrgPatch,
): Promise<Organisation> {
  requireSignedIn(ctx.actor);
  return audited(
    database,
    ctx,
    { action: 'org.update', resourceType: 'organisation', resourceId: id },
    async () => {
      const org = await visibleOrg(database, ctx, id, P['orgs.manage']);
      if (patch.categories) assertCategories(patch.categories);
      if (patch.parentId) {
        await visibleOrg(database, ctx, patch.parentId, P['orgs.read']);
        if (await isOrgAncestor(database.db, id, patch.parentId))
          throw unprocessable('An organisation cannot be placed below itself');
      }
      await database.transact(async (trx) => {
        await updateOrg(trx, id, {
          ...(patch.name !== undefined && { name: patch.name }),
          ...(patch.categories !== undefined && { categories: patch.categories }),
          ...(patch.services !== undefined && { services: patch.services }),
          ...(patch.status !== undefined && { status: patch.status }),
          ...(patch.parentId !== undefined && { parentId: patch.parentId }),
        });
        await recordAudit(trx, ctx, {
          action: 'org.update',
          resourceType: 'organisation',
          resourceId: id,
          area: org.area_code,
          details: { changes: patch },
        });
      });
      return getOrg(database, ctx, id);
    },
  );
}

/** True for a PostgreSQL unique-constraint violation (SQLSTATE 23505) on either engine. */
export function isUniqueViolation(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === '23505';
}
