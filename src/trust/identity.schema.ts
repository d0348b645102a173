/** Schemas of the identity and admin API (organisations, users, roles, API keys, sign-in). */
import { Type, type Static } from 'typebox';

const Uuid = Type.String({ format: 'uuid' });
const Timestamp = Type.String({ format: 'date-time' });
const AreaCodeRef = Type.String({ pattern: '^[0-9]{6}([0-9]{3}){0,3}$', description: 'An area code' });
const Category = Type.String({
  pattern: '^(component|event|hotline):[0-9]{4}$',
  description: 'An incident category: kind and classification code, e.g. event:0101',
});
const ServiceItem = Type.String({ pattern: '^[A-Za-z0-9._-]{1,64}$' });
export const Paging = {
  limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
  offset: Type.Integer({ minimum: 0, maximum: 1_000_000, default: 0 }),
};

export const OrgKind = Type.Union([
  Type.Literal('platform'),
  Type.Literal('operations-centre'),
  Type.Literal('department'),
  Type.Literal('enterprise'),
]);
export const OrgLevel = Type.Union([Type.Literal('city'), Type.Literal('district'), Type.Literal('street')]);
const Status = Type.Union([Type.Literal('active'), Type.Literal('disabled')]);

export const Organisation = Type.Object({
  id: Uuid,
  code: Type.String(),
  name: Type.String(),
  kind: OrgKind,
  level: Type.Union([OrgLevel, Type.Null()]),
  areaCode: Type.String(),
  parentId: Type.Union([Uuid, Type.Null()]),
  creditCode: Type.Union([Type.String(), Type.Null()]),
  categories: Type.Array(Type.String()),
  services: Type.Array(Type.String()),
  status: Status,
  demo: Type.Boolean(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type Organisation = Static<typeof Organisation>;

export const OrgCreate = Type.Object(
  {
    code: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{1,62}$' }),
    name: Type.String({ minLength: 1, maxLength: 200 }),
    kind: OrgKind,
    level: Type.Optional(OrgLevel),
    areaCode: AreaCodeRef,
    parentId: Type.Optional(Uuid),
    creditCode: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
    categories: Type.Optional(Type.Array(Category, { maxItems: 500, uniqueItems: true })),
    services: Type.Optional(Type.Array(ServiceItem, { maxItems: 500, uniqueItems: true })),
  },
  { additionalProperties: false },
);
export type OrgCreate = Static<typeof OrgCreate>;

export const OrgPatch = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    parentId: Type.Optional(Type.Union([Uuid, Type.Null()])),
    categories: Type.Optional(Type.Array(Category, { maxItems: 500, uniqueItems: true })),
    services: Type.Optional(Type.Array(ServiceItem, { maxItems: 500, uniqueItems: true })),
    status: Type.Optional(Status),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type OrgPatch = Static<typeof OrgPatch>;

export const OrgQuery = Type.Object(
  {
    kind: Type.Optional(OrgKind),
    level: Type.Optional(OrgLevel),
    area: Type.Optional(AreaCodeRef),
    category: Type.Optional(Category),
    parentId: Type.Optional(Uuid),
    q: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    status: Type.Optional(Status),
    ...Paging,
  },
  { additionalProperties: false },
);
export type OrgQuery = Static<typeof OrgQuery>;

export const UserKind = Type.Union([
  Type.Literal('staff'),
  Type.Literal('inspector'),
  Type.Literal('citizen'),
  Type.Literal('enterprise'),
]);

export const Membership = Type.Object({
  id: Uuid,
  orgId: Uuid,
  orgCode: Type.String(),
  orgName: Type.String(),
  areaCode: Type.String(),
  role: Type.String(),
  createdAt: Timestamp,
});

export const User = Type.Object({
  id: Uuid,
  username: Type.String(),
  displayName: Type.String(),
  kind: UserKind,
  areaCode: Type.String(),
  residentIdMasked: Type.Union([Type.String(), Type.Null()]),
  externalSubject: Type.Union([Type.String(), Type.Null()]),
  status: Status,
  locked: Type.Boolean(),
  demo: Type.Boolean(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
  memberships: Type.Optional(Type.Array(Membership)),
});
export type User = Static<typeof User>;

const Username = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$' });

export const UserCreate = Type.Object(
  {
    username: Username,
    displayName: Type.String({ minLength: 1, maxLength: 100 }),
    kind: UserKind,
    areaCode: AreaCodeRef,
    password: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    residentId: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
    externalSubject: Type.Optional(Type.String({ minLength: 1, maxLength: 300 })),
    memberships: Type.Optional(
      Type.Array(
        Type.Object({ orgId: Uuid, role: Type.String({ maxLength: 64 }) }, { additionalProperties: false }),
        {
          maxItems: 50,
        },
      ),
    ),
  },
  { additionalProperties: false },
);
export type UserCreate = Static<typeof UserCreate>;

export const UserPatch = Type.Object(
  {
    displayName: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    areaCode: Type.Optional(AreaCodeRef),
    status: Type.Optional(Status),
    password: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    externalSubject: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 300 }), Type.Null()])),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type UserPatch = Static<typeof UserPatch>;

export const UserQuery = Type.Object(
  {
    kind: Type.Optional(UserKind),
    status: Type.Optional(Status),
    area: Type.Optional(AreaCodeRef),
    orgId: Type.Optional(Uuid),
    role: Type.Optional(Type.String({ maxLength: 64 })),
    q: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    ...Paging,
  },
  { additionalProperties: false },
);
export type UserQuery = Static<typeof UserQuery>;

export const MembershipCreate = Type.Object(
  { orgId: Uuid, role: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);

export const Role = Type.Object({
  code: Type.String(),
  nameZh: Type.String(),
  nameEn: Type.String(),
  permissions: Type.Array(Type.String()),
  system: Type.Boolean(),
});
export type Role = Static<typeof Role>;

export const RoleCreate = Type.Object(
  {
    code: Type.String({ pattern: '^[a-z][a-z0-9-]{1,62}$' }),
    nameZh: Type.String({ minLength: 1, maxLength: 100 }),
    nameEn: Type.String({ minLength: 1, maxLength: 100 }),
    permissions: Type.Array(Type.String({ maxLength: 100 }), { maxItems: 200, uniqueItems: true }),
  },
  { additionalProperties: false },
);
export type RoleCreate = Static<typeof RoleCreate>;

export const RolePatch = Type.Object(
  {
    nameZh: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    nameEn: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    permissions: Type.Optional(
      Type.Array(Type.String({ maxLength: 100 }), { maxItems: 200, uniqueItems: true }),
    ),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type RolePatch = Static<typeof RolePatch>;

export const ApiKey = Type.Object({
  id: Uuid,
  prefix: Type.String(),
  name: Type.String(),
  orgId: Uuid,
  permissions: Type.Array(Type.String()),
  expiresAt: Type.Union([Timestamp, Type.Null()]),
  revokedAt: Type.Union([Timestamp, Type.Null()]),
  lastUsedAt: Type.Union([Timestamp, Type.Null()]),
  createdAt: Timestamp,
});
export type ApiKey = Static<typeof ApiKey>;

export const ApiKeyCreate = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    orgId: Uuid,
    permissions: Type.Array(Type.String({ maxLength: 100 }), {
      minItems: 1,
      maxItems: 200,
      uniqueItems: true,
    }),
    expiresAt: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);
export type ApiKeyCreate = Static<typeof ApiKeyCreate>;

export const ApiKeyIssued = Type.Intersect([
  ApiKey,
  Type.Object({ key: Type.String({ description: 'The secret key; shown once, store it now' }) }),
]);

export const LoginRequest = Type.Object(
  {
    username: Type.String({ minLength: 1, maxLength: 64 }),
    password: Type.String({ minLength: 1, maxLength: 1024 }),
  },
  { additionalProperties: false },
);

export const RefreshRequest = Type.Object(
  { refreshToken: Type.String({ minLength: 1, maxLength: 200 }) },
  { additionalProperties: false },
);

export const TokenPair = Type.Object({
  accessToken: Type.String(),
  tokenType: Type.Literal('Bearer'),
  expiresIn: Type.Integer(),
  refreshToken: Type.String(),
  refreshExpiresIn: Type.Integer(),
});

export const PasswordChange = Type.Object(
  {
    currentPassword: Type.String({ minLength: 1, maxLength: 1024 }),
    newPassword: Type.String({ minLength: 1, maxLength: 1024 }),
  },
  { additionalProperties: false },
);

export const Me = Type.Object({
  kind: Type.String(),
  id: Type.Union([Type.String(), Type.Null()]),
  name: Type.String(),
  user: Type.Union([User, Type.Null()]),
  grants: Type.Array(
    Type.Object({
      orgId: Type.Union([Uuid, Type.Null()]),
      orgCode: Type.Union([Type.String(), Type.Null()]),
      role: Type.Union([Type.String(), Type.Null()]),
      scope: Type.String(),
      permissions: Type.Array(Type.String()),
    }),
  ),
});
