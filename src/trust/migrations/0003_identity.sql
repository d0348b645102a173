-- 统一账户管理: organisations, roles, users, memberships, credentials.

-- 组织: departments (委办局), operations centres (城运中心), enterprises (企业) and the platform's own
-- operator. Every organisation acts within a jurisdiction (an area).
create table trust.organisations (
  id          uuid primary key,
  -- A stable, human-readable handle (e.g. 'district-310113-cgj'); unique, lower-case.
  code        text not null unique check (code ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
  name        text not null check (length(name) between 1 and 200),
  kind        text not null check (kind in ('platform', 'operations-centre', 'department', 'enterprise')),
  -- The administrative level the organisation works at; enterprises have none.
  level       text check (level in ('city', 'district', 'street')),
  area_code   text not null references trust.areas (code),
  parent_id   uuid references trust.organisations (id),
  -- 统一社会信用代码 (GB 32100), required for enterprises, validated by the application.
  credit_code text unique check (credit_code ~ '^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$'),
  -- Incident categories (classification codes) and service items the organisation answers for.
  categories  text[] not null default '{}',
  services    text[] not null default '{}',
  status      text not null default 'active' check (status in ('active', 'disabled')),
  demo        boolean not null default false,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  check ((kind = 'enterprise') = (credit_code is not null)),
  check ((kind = 'enterprise') = (level is null)),
  check (parent_id is null or parent_id <> id)
);
create index organisations_area_idx on trust.organisations (area_code);
create index organisations_parent_idx on trust.organisations (parent_id);
create index organisations_categories_idx on trust.organisations using gin (categories);

-- 角色: named permission sets. System roles are defined in code and synchronised at start-up;
-- custom roles are created through the admin API.
create table trust.roles (
  code        text primary key check (code ~ '^[a-z][a-z0-9-]{1,62}$'),
  name_zh     text not null check (length(name_zh) between 1 and 100),
  name_en     text not null check (length(name_en) between 1 and 100),
  permissions text[] not null default '{}',
  system      boolean not null default false,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);

-- 用户: staff, grid inspectors, citizens, enterprise users.
create table trust.users (
  id           uuid primary key,
  username     text not null unique check (username ~ '^[a-z0-9][a-z0-9._-]{2,63}$'),
  display_name text not null check (length(display_name) between 1 and 100),
  kind         text not null check (kind in ('staff', 'inspector', 'citizen', 'enterprise')),
  -- The area whose administrators manage this account (for staff: their organisation's area).
  area_code    text not null references trust.areas (code),
  -- scrypt$N$r$p$salt$hash; null for accounts that sign in only through the external provider.
  password_hash text,
  password_changed_at timestamptz,
  -- 居民身份证号: only a keyed (salted) hash for matching and a masked form for display.
  resident_id_hash   text unique,
  resident_id_masked text,
  -- The external identity provider's subject (issuer + sub), for OIDC sign-in.
  external_subject text unique,
  status       text not null default 'active' check (status in ('active', 'disabled')),
  -- Bumped when the account is disabled or its password changes: outstanding tokens stop working.
  token_version integer not null default 1,
  failed_logins integer not null default 0,
  locked_until  timestamptz,
  demo         boolean not null default false,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  check ((resident_id_hash is null) = (resident_id_masked is null))
);
create index users_area_idx on trust.users (area_code);

-- 成员关系: user × organisation × role. The organisation's area is the grant's jurisdiction.
create table trust.memberships (
  id         uuid primary key,
  user_id    uuid not null references trust.users (id),
  org_id     uuid not null references trust.organisations (id),
  role_code  text not null references trust.roles (code),
  created_at timestamptz not null default now(),
  unique (user_id, org_id, role_code)
);
create index memberships_org_idx on trust.memberships (org_id);
create index memberships_role_idx on trust.memberships (role_code);

-- Refresh tokens: opaque, stored hashed, rotated on every use; reuse of a rotated token revokes
-- the whole family (a stolen token is detected the next time either party uses it).
create table trust.refresh_tokens (
  id          uuid primary key,
  family_id   uuid not null,
  user_id     uuid not null references trust.users (id),
  token_hash  text not null unique,
  expires_at  timestamptz not null,
  used_at     timestamptz,
  revoked_at  timestamptz,
  created_at  timestamptz not null default now()
);
create index refresh_tokens_family_idx on trust.refresh_tokens (family_id);
create index refresh_tokens_user_idx on trust.refresh_tokens (user_id);

-- API keys for machines: 'pj_<prefix>_<secret>'; only the prefix and the secret's SHA-256 are kept.
create table trust.api_keys (
  id          uuid primary key,
  prefix      text not null unique check (prefix ~ '^[a-z0-9]{8}$'),
  secret_hash text not null,
  name        text not null check (length(name) between 1 and 100),
  org_id      uuid not null references trust.organisations (id),
  -- The permissions the key carries, within its organisation's jurisdiction.
  permissions text[] not null,
  created_by  uuid references trust.users (id),
  expires_at  timestamptz,
  revoked_at  timestamptz,
  last_used_at timestamptz,
  created_at  timestamptz not null default now()
);
create index api_keys_org_idx on trust.api_keys (org_id);
