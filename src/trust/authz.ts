/**
 * Authorization, decided here and nowhere else (授权). A caller (actor) holds grants: a set of
 * permissions over a jurisdiction, the area path of the organisation the grant is held in. An
 * actor may do X to a resource when some grant carries X and its jurisdiction contains the
 * resource's area. A refusal for a resource the actor cannot even see answers 404, so existence is
 * not leaked; lists are filtered in SQL with `jurisdictionFilter`.
 */
import { sql, type RawBuilder } from 'kysely';
import { AppError, Errors } from '../kernel/index.ts';
import { escapeLike } from './sql.ts';

export interface Grant {
  orgId: string | null;
  orgCode: string | null;
  role: string | null;
  permissions: ReadonlySet<string>;
  /** The jurisdiction: an area path ('310000/310113'); the root path alone means the whole city. */
  scope: string;
}

export type ActorKind = 'user' | 'api-key' | 'system' | 'anonymous';

export interface Actor {
  kind: ActorKind;
  /** User id, API key id, or a fixed name for the system. */
  id: string | null;
  /** What audit records and logs call the actor (username, key name, 'system'). */
  name: string;
  /** The signed-in user (null for API keys: a key acts for its organisation, not for a person). */
  userId: string | null;
  /** The organisation the actor acts for in audit records (a key's organisation, a user's first). */
  org: string | null;
  grants: readonly Grant[];
}

/** Where a resource sits: its area's path (null for platform-wide resources) and its owner. */
export interface Scoped {
  areaPath: string | null;
  /** The user the resource is about (a user record, their own tokens): they may read it. */
  ownerUserId?: string | null;
}

export const ANONYMOUS: Actor = {
  kind: 'anonymous',
  id: null,
  name: 'anonymous',
  userId: null,
  org: null,
  grants: [],
};

/** The platform acting on its own behalf (start-up seeding, scheduled checkpoints, the CLI). */
export const SYSTEM: Actor = {
  kind: 'system',
  id: 'system',
  name: 'system',
  userId: null,
  org: null,
  grants: [],
};

/** Permissions a user always has over resources about themselves. */
const SELF_PERMISSIONS: ReadonlySet<string> = new Set(['users.read']);

/** True when jurisdiction `scope` contains area `path` (a null path needs the whole city). */
export function covers(scope: string, path: string | null): boolean {
  if (!scope.includes('/')) return true;
  return path !== null && (path === scope || path.startsWith(`${scope}/`));
}

/** The one policy: may `actor` exercise `permission` on `resource`? */
export function can(actor: Actor, permission: string, resource: Scoped): boolean {
  if (actor.kind === 'system') return true;
  if (actor.userId !== null && resource.ownerUserId === actor.userId && SELF_PERMISSIONS.has(permission))
    return true;
  return actor.grants.some((g) => g.permissions.has(permission) && covers(g.scope, resource.areaPath));
}

/**
 * Throws unless `can(actor, permission, resource)`: 401 for an anonymous caller, 403 when the
 * caller may see the resource (`visibleWith`) but not do this, and 404 otherwise.
 */
export function authorize(
  actor: Actor,
  permission: string,
  resource: Scoped,
  options: { visibleWith?: string; what?: string } = {},
): void {
  if (can(actor, permission, resource)) return;
  if (actor.kind === 'anonymous')
    throw new AppError(Errors.unauthorized, { detail: 'Sign in or present an API key' });
  if (options.visibleWith !== undefined && can(actor, options.visibleWith, resource))
    throw new AppError(Errors.forbidden, { detail: `Missing permission ${permission}` });
  throw new AppError(Errors['not-found'], { detail: `No such ${options.what ?? 'resource'}` });
}

/** Throws 401 for an anonymous caller. */
export function requireSignedIn(actor: Actor): void {
  if (actor.kind === 'anonymous')
    throw new AppError(Errors.unauthorized, { detail: 'Sign in or present an API key' });
}

/** The jurisdictions in which `actor` holds `permission`: everywhere, or a list of area paths. */
export function scopesFor(actor: Actor, permission: string): { all: boolean; paths: string[] } {
  if (actor.kind === 'system') return { all: true, paths: [] };
  const paths = actor.grants.filter((g) => g.permissions.has(permission)).map((g) => g.scope);
  return { all: paths.some((p) => !p.includes('/')), paths: [...new Set(paths)] };
}

/** All permissions the actor holds in some grant whose jurisdiction contains `path`. */
export function permissionsAt(actor: Actor, path: string | null): Set<string> {
  const out = new Set<string>();
  for (const g of actor.grants) if (covers(g.scope, path)) for (const p of g.permissions) out.add(p);
  return out;
}

/**
 * A SQL condition keeping rows whose area path (`pathColumn`, an SQL expression) lies in the
 * actor's jurisdiction for `permission`; rows without an area only for city-wide grants.
 */
export function jurisdictionFilter(
  actor: Actor,
  permission: string,
  pathColumn: RawBuilder<unknown>,
): RawBuilder<boolean> {
  const { all, paths } = scopesFor(actor, permission);
  if (all) return sql<boolean>`true`;
  if (paths.length === 0) return sql<boolean>`false`;
  const prefixes = paths.map((p) => `${escapeLike(p)}/%`);
  return sql<boolean>`(${pathColumn} = any(${paths}::text[]) or ${pathColumn} like any(${prefixes}::text[]))`;
}

/** Who is calling and why: what every service method receives first. */
export interface CallContext {
  actor: Actor;
  /** The HTTP request id (X-Request-Id), for audit records and logs. */
  requestId: string | null;
  /** The declared purpose of a personal-data read (X-Purpose, 用途), recorded in the audit trail. */
  purpose: string | null;
}

/** A context for the platform's own work (seeding, schedulers, the CLI). */
export function systemContext(purpose: string | null = null): CallContext {
  return { actor: SYSTEM, requestId: null, purpose };
}
