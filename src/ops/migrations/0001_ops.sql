-- Unified city operations (一网统管): cases (案件), the responsibility matrix (责任矩阵),
-- attachments stored by content hash, the in-app notification feed, and webhooks.
create schema if not exists ops;

create sequence ops.case_number;

create table ops.cases (
  id             uuid primary key,
  -- The number people quote (on the phone, in Open311 as service_request_id).
  number         bigint not null unique default nextval('ops.case_number'),
  instance_id    uuid not null unique,
  source         text not null check (source in ('citizen', 'hotline', 'inspector', 'sensor', 'department', 'assignment')),
  channel        text not null default 'api' check (channel in ('api', 'open311')),
  category       text not null,
  description    text not null,
  address        text,
  geom           geometry(Point, 4326) not null,
  -- The deepest area (unit grid) covering the point, its path, and the district/street it lies in.
  area_code      text not null,
  area_path      text not null,
  district_code  text not null,
  street_code    text,
  -- Which operations centre level has it: street → district → city as it escalates.
  level          text not null default 'street' check (level in ('street', 'district', 'city')),
  -- The operations centres over it at each level ({"street": id, "district": id, "city": id}).
  centres        jsonb not null default '{}',
  status         text not null,
  open           boolean not null default true,
  department_ids uuid[] not null default '{}',
  -- How the department was chosen: the matrix, or a dispatcher overriding it (with the reason).
  routed_by      text check (routed_by in ('matrix', 'dispatcher')),
  route_reason   text,
  entity_ids     text[] not null default '{}',
  photos         jsonb not null default '[]',
  media_urls     text[] not null default '{}',
  attributes     jsonb not null default '{}',
  -- The reporter: an account, and contact details (personal data: masked unless needed, reads audited).
  reporter_user_id uuid,
  reporter_name    text,
  reporter_phone   text,
  reporter_email   text,
  -- Reporters of cases merged into this one, kept informed.
  watchers       uuid[] not null default '{}',
  merged_into    uuid references ops.cases (id),
  -- The organisation whose integration reported it (an Open311 app's key), told of changes by webhook.
  reported_by_org uuid,
  state_due_at   timestamptz,
  state_near_due_at timestamptz,
  due_at         timestamptz,
  breached_at    timestamptz,
  escalations    integer not null default 0,
  rating         smallint check (rating between 1 and 5),
  rating_comment text,
  version        integer not null default 1,
  open311_token  text unique,
  created_by     text,
  created_at     timestamptz not null,
  updated_at     timestamptz not null,
  closed_at      timestamptz
);
create index cases_created_idx on ops.cases (created_at desc, id desc);
create index cases_path_idx on ops.cases (area_path text_pattern_ops);
create index cases_district_due_idx on ops.cases (district_code, state_due_at, id) where open;
create index cases_street_due_idx on ops.cases (street_code, state_due_at, id) where open;
create index cases_geom_idx on ops.cases using gist (geom) where open;
create index cases_departments_idx on ops.cases using gin (department_ids);
create index cases_status_idx on ops.cases (status, created_at desc);
create index cases_merged_idx on ops.cases (merged_into) where merged_into is not null;

-- The responsibility matrix: category × area → department. The deepest area on the case's path
-- with a rule wins, then the most specific category ('event:0102' over 'event:01*' over '*').
create table ops.routing_rules (
  id         uuid primary key,
  category   text not null check (category ~ '^(\*|(component|event|hotline):[0-9]{2}(\*|[0-9]{2}))$'),
  area_code  text not null,
  org_id     uuid not null,
  created_by text,
  created_at timestamptz not null default now(),
  unique (category, area_code)
);

-- Photos and attachments: files on disk named by their SHA-256; this is their metadata.
create table ops.media (
  sha256       text primary key check (sha256 ~ '^[0-9a-f]{64}$'),
  content_type text not null,
  size         integer not null,
  created_by   text,
  created_at   timestamptz not null default now()
);

-- In-app feed: to a user (the reporter, watchers) or to an organisation (assignees, centres).
create table ops.notifications (
  id          uuid primary key,
  user_id     uuid,
  org_id      uuid,
  case_id     uuid not null references ops.cases (id),
  -- The workflow history entry it tells of: (instance, seq, recipient) is unique, so it is idempotent.
  seq         integer not null,
  kind        text not null,
  title_zh    text not null,
  title_en    text not null,
  created_at  timestamptz not null,
  read_at     timestamptz,
  check (user_id is not null or org_id is not null)
);
create unique index notifications_once_idx on ops.notifications (case_id, seq, coalesce(user_id, org_id));
create index notifications_user_idx on ops.notifications (user_id, created_at desc) where user_id is not null;
create index notifications_org_idx on ops.notifications (org_id, created_at desc) where org_id is not null;

-- Webhooks: an organisation's endpoint for its cases' changes; deliveries are queued per event
-- (unique per webhook and event: idempotent), retried with back-off, failures visible.
create table ops.webhooks (
  id         uuid primary key,
  org_id     uuid not null,
  url        text not null,
  secret     text not null,
  active     boolean not null default true,
  created_by text,
  created_at timestamptz not null default now()
);
create index webhooks_org_idx on ops.webhooks (org_id) where active;

create table ops.webhook_deliveries (
  id          uuid primary key,
  webhook_id  uuid not null references ops.webhooks (id),
  event_id    uuid not null,
  case_id     uuid not null,
  payload     jsonb not null,
  status      text not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
  attempts    integer not null default 0,
  next_at     timestamptz not null default now(),
  lease_until timestamptz,
  last_error  text,
  last_status integer,
  created_at  timestamptz not null default now(),
  delivered_at timestamptz,
  unique (webhook_id, event_id)
);
create index webhook_deliveries_due_idx on ops.webhook_deliveries (next_at) where status = 'pending';
