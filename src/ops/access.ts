/**
 * Who may do what with cases, decided here and nowhere else in ops. Seeing a case: `cases.read`
 * over its area, or being its reporter, a watcher, an assigned department or the organisation
 * whose integration reported it; otherwise 404, so a 宝山 officer cannot learn that a 浦东 case
 * exists. Contact details: `cases.contact` over the area, or the reporter themself.
 */
import { AppError, Errors } from '../kernel/index.ts';
import { can, OpsPermissions, type Actor } from '../trust/index.ts';
import type { CaseRow } from './case.store.ts';

const P = OpsPermissions;

export type CaseSource = 'citizen' | 'hotline' | 'inspector' | 'sensor' | 'department' | 'assignment';

/** The ids of the organisations the actor acts for (its grants'). */
export function actorOrgIds(actor: Actor): string[] {
  return [...new Set(actor.grants.flatMap((g) => (g.orgId ? [g.orgId] : [])))];
}

/** Throws unless the actor may register a case from `source` at `areaPath`. */
export function authorizeCreate(actor: Actor, areaPath: string, source: CaseSource): void {
  if (actor.kind === 'anonymous')
    throw new AppError(Errors.unauthorized, { detail: 'Sign in or present an API key' });
  if (actor.kind === 'system') return;
  if (can(actor, P['cases.create'], { areaPath })) return;
  if (actor.kind === 'api-key') {
    if (can(actor, P['cases.report'], { areaPath })) return;
    throw new AppError(Errors.forbidden, { detail: "The location is outside this key's jurisdiction" });
  }
  // Anyone signed in may report what they see, as a citizen.
  if (source === 'citizen') return;
  throw new AppError(Errors.forbidden, {
    detail: `Registering a case from source "${source}" here needs the permission cases.create over its area`,
  });
}

/** True when the actor may see the case. */
export function canSeeCase(actor: Actor, row: CaseRow): boolean {
  if (can(actor, P['cases.read'], { areaPath: row.area_path })) return true;
  if (actor.userId !== null && (row.reporter_user_id === actor.userId || row.watchers.includes(actor.userId)))
    return true;
  const orgs = new Set(actorOrgIds(actor));
  return (
    row.department_ids.some((d) => orgs.has(d)) ||
    (row.reported_by_org !== null && orgs.has(row.reported_by_org))
  );
}

/** Throws 401/404 unless the actor may see the case. */
export function authorizeSee(actor: Actor, row: CaseRow | undefined): asserts row is CaseRow {
  if (actor.kind === 'anonymous')
    throw new AppError(Errors.unauthorized, { detail: 'Sign in or present an API key' });
  if (!row || !canSeeCase(actor, row)) throw new AppError(Errors['not-found'], { detail: 'No such case' });
}

/** True when the actor may see the reporter's contact details unmasked. */
export function canSeeContact(actor: Actor, row: CaseRow): boolean {
  return (
    (actor.userId !== null && actor.userId === row.reporter_user_id) ||
    can(actor, P['cases.contact'], { areaPath: row.area_path })
  );
}

/** Throws unless the actor may use the supervision views and statistics over `areaPath`. */
export function authorizeSupervise(actor: Actor, areaPath: string | null): void {
  if (actor.kind === 'anonymous')
    throw new AppError(Errors.unauthorized, { detail: 'Sign in or present an API key' });
  if (!can(actor, P['cases.supervise'], { areaPath }))
    throw new AppError(Errors['not-found'], { detail: 'No such area in your jurisdiction' });
}

/** Masks a name (张*明), phone (138****5678) or e-mail (z***@example.com) for roles that do not need them. */
export function mask(kind: 'name' | 'phone' | 'email', value: string | null): string | null {
  if (value === null) return null;
  const chars = Array.from(value);
  if (kind === 'name')
    return chars.length <= 1
      ? '*'
      : `${chars[0] ?? ''}${'*'.repeat(Math.max(1, chars.length - 2))}${chars.length > 2 ? (chars[chars.length - 1] ?? '') : ''}`;
  if (kind === 'phone') return value.length <= 7 ? '****' : `${value.slice(0, 3)}****${value.slice(-4)}`;
  const at = value.indexOf('@');
  return at <= 0 ? '***' : `${value[0] ?? ''}***${value.slice(at)}`;
}
