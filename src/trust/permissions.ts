/**
 * Permissions (权限) and the system roles (角色) built from them. A permission is a string
 * `<resource>.<verb>`; modules register theirs with `definePermissions` (as errors are registered),
 * so a custom role can only name permissions that something enforces.
 */

export interface PermissionSpec {
  readonly code: string;
  readonly zh: string;
  readonly en: string;
}

const registry = new Map<string, PermissionSpec>();

/** Registers permissions; throws at import time when a code is defined twice or malformed. */
export function definePermissions<const T extends Record<string, { zh: string; en: string }>>(
  specs: T,
): { readonly [K in keyof T]: K } {
  const out: Record<string, string> = {};
  for (const [code, spec] of Object.entries(specs)) {
    if (!/^[a-z][a-z-]*(\.[a-z][a-z-]*)+$/.test(code)) throw new Error(`malformed permission: ${code}`);
    if (registry.has(code)) throw new Error(`permission defined twice: ${code}`);
    registry.set(code, { code, ...spec });
    out[code] = code;
  }
  return out as { readonly [K in keyof T]: K };
}

/** Every registered permission, sorted by code. */
export function permissionCatalogue(): readonly PermissionSpec[] {
  return [...registry.values()].sort((a, b) => a.code.localeCompare(b.code));
}

export function isPermission(code: string): boolean {
  return registry.has(code);
}

/** The trust module's own permissions. */
export const P = definePermissions({
  'areas.manage': { zh: '管理区域', en: 'Create and change areas' },
  'orgs.read': { zh: '查看组织', en: 'See organisations' },
  'orgs.manage': { zh: '管理组织', en: 'Create and change organisations' },
  'users.read': { zh: '查看用户（含个人信息）', en: 'See users, including personal data' },
  'users.manage': { zh: '管理用户与成员关系', en: 'Create and change users and memberships' },
  'roles.manage': { zh: '管理角色', en: 'Create and change roles' },
  'apikeys.manage': { zh: '管理接口密钥', en: 'Issue and revoke API keys' },
  'audit.read': { zh: '查看审计记录', en: 'Read audit records' },
  'audit.checkpoint': { zh: '签发审计检查点', en: 'Sign audit checkpoints on demand' },
});

export type TrustPermission = keyof typeof P;

/**
 * The digital twin's permissions (数字孪生), registered here so that the system roles below can
 * name them; the twin module enforces them (src/twin/access.ts) over the entity's area.
 */
export const TwinPermissions = definePermissions({
  'twin.entities.read': { zh: '查看孪生实体', en: 'Read digital-twin entities' },
  'twin.entities.write': { zh: '维护孪生实体', en: 'Create, change and delete digital-twin entities' },
  'twin.admin': {
    zh: '管理孪生租户与上下文',
    en: 'Manage digital-twin tenants and hosted JSON-LD contexts',
  },
});
const TW = TwinPermissions;

/** The workflow engine's permissions (流程引擎): definitions and working calendars. */
export const WorkflowPermissions = definePermissions({
  'workflows.read': { zh: '查看流程定义', en: 'Read workflow definitions and calendars' },
  'workflows.manage': {
    zh: '发布流程定义与工作日历',
    en: 'Publish workflow definitions and working calendars',
  },
});
const WF = WorkflowPermissions;

/**
 * Unified city operations' permissions (一网统管), enforced by the ops module over the case's area.
 * Who may take which step of a case is the workflow definition's roles; these say who may see
 * cases, report them, see reporters' contact details, and maintain the routing matrix.
 */
export const OpsPermissions = definePermissions({
  'cases.read': { zh: '查看案件', en: 'See cases' },
  'cases.create': { zh: '登记案件', en: 'Register cases (hotline, inspectors, departments)' },
  'cases.report': { zh: '上报案件（接口）', en: 'Report cases through an integration (Open311 key)' },
  'cases.contact': { zh: '查看报告人联系方式', en: "See reporters' contact details (personal data)" },
  'cases.supervise': { zh: '督办与统计', en: 'Supervision views and statistics' },
  'routing.manage': { zh: '维护责任矩阵', en: 'Maintain the responsibility (routing) matrix' },
  'webhooks.manage': { zh: '管理推送地址', en: "Manage an organisation's case webhooks" },
});
const OP = OpsPermissions;

export interface RoleDefinition {
  code: string;
  zh: string;
  en: string;
  permissions: readonly string[];
}

/**
 * Roles every deployment has; synchronised into `trust.roles` at start-up. Later modules add their
 * permissions to these roles here, so one list says what each kind of user may do.
 */
export const SYSTEM_ROLES: readonly RoleDefinition[] = [
  {
    code: 'platform-admin',
    zh: '平台管理员',
    en: 'Platform administrator',
    permissions: [...Object.values(P), ...Object.values(TW), ...Object.values(WF), ...Object.values(OP)],
  },
  {
    code: 'org-admin',
    zh: '单位管理员',
    en: 'Organisation administrator',
    // Twin and operations permissions too, so that an organisation's administrator can grant its staff roles.
    permissions: [
      P['orgs.read'],
      P['orgs.manage'],
      P['users.read'],
      P['users.manage'],
      P['apikeys.manage'],
      TW['twin.entities.read'],
      TW['twin.entities.write'],
      // Everything the operations roles below carry, so the administrator can grant them.
      WF['workflows.read'],
      OP['cases.read'],
      OP['cases.create'],
      OP['cases.contact'],
      OP['cases.supervise'],
      OP['routing.manage'],
      OP['webhooks.manage'],
    ],
  },
  {
    code: 'auditor',
    zh: '审计员',
    en: 'Auditor',
    permissions: [P['audit.read'], P['audit.checkpoint'], P['orgs.read']],
  },
  {
    code: 'ops-operator',
    zh: '城运中心值班员',
    en: 'Operations-centre operator',
    permissions: [
      P['orgs.read'],
      P['users.read'],
      TW['twin.entities.read'],
      TW['twin.entities.write'],
      WF['workflows.read'],
      OP['cases.read'],
      OP['cases.create'],
      OP['cases.contact'],
      OP['cases.supervise'],
      OP['routing.manage'],
      OP['webhooks.manage'],
    ],
  },
  {
    code: 'department-staff',
    zh: '委办局工作人员',
    en: 'Department staff',
    permissions: [
      P['orgs.read'],
      TW['twin.entities.read'],
      TW['twin.entities.write'],
      WF['workflows.read'],
      OP['cases.read'],
      OP['cases.create'],
      OP['cases.contact'],
      OP['webhooks.manage'],
    ],
  },
  {
    code: 'grid-inspector',
    zh: '网格员',
    en: 'Grid inspector',
    permissions: [TW['twin.entities.read'], OP['cases.read'], OP['cases.create']],
  },
  { code: 'enterprise-user', zh: '企业用户', en: 'Enterprise user', permissions: [] },
  { code: 'citizen', zh: '市民', en: 'Citizen', permissions: [] },
];
