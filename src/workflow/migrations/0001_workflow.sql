-- The workflow engine (流程引擎): definitions as versioned data, instances with their full
-- history, parallel branches, SLA timers, and working calendars.
create schema if not exists workflow;

-- Working calendars (工作日历) for SLAs: working hours, weekdays, holidays, make-up working days.
create table workflow.calendars (
  code       text primary key check (code ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  calendar   jsonb not null,
  version    integer not null default 1,
  updated_at timestamptz not null default now()
);

-- Definitions: one row per published version; running instances keep theirs.
create table workflow.definitions (
  key        text not null,
  version    integer not null check (version > 0),
  definition jsonb not null,
  -- SHA-256 of the canonical definition: publishing the same content again is not a new version.
  digest     text not null,
  created_at timestamptz not null default now(),
  created_by text,
  primary key (key, version)
);

create table workflow.instances (
  id                 uuid primary key,
  definition_key     text not null,
  definition_version integer not null,
  -- What the workflow is about (e.g. 'case' + the case id), owned by the module that started it.
  subject_type       text not null,
  subject_id         text not null,
  parent_id          uuid references workflow.instances (id),
  state              text not null,
  -- Optimistic version: every transition increments it; a client's stale version gets 409.
  version            integer not null default 1,
  -- Counts state entries, so a timer armed for one visit to a state never fires in a later one.
  state_seq          integer not null default 1,
  -- The last history entry's seq.
  history_seq        integer not null default 1,
  -- The jurisdiction the instance sits in (area path), for role resolution.
  area_path          text,
  reporter_user_id   uuid,
  -- Organisations working on it now (派遣 targets), by id.
  assignees          uuid[] not null default '{}',
  -- Small domain facts guards read (e.g. the escalation level), kept by effects.
  data               jsonb not null default '{}',
  state_entered_at   timestamptz not null,
  state_due_at       timestamptz,
  state_near_due_at  timestamptz,
  due_at             timestamptz,
  breached_at        timestamptz,
  started_at         timestamptz not null,
  ended_at           timestamptz
);
create index instances_subject_idx on workflow.instances (subject_type, subject_id);
create index instances_parent_idx on workflow.instances (parent_id) where parent_id is not null;

-- Parallel branches (联勤联动): one per organisation working a parallel state.
create table workflow.branches (
  instance_id  uuid not null references workflow.instances (id),
  state_seq    integer not null,
  org_id       uuid not null,
  opened_at    timestamptz not null,
  completed_at timestamptz,
  completed_by text,
  primary key (instance_id, state_seq, org_id)
);

-- The full history: who, for which organisation, when, from/to, what they said and attached.
create table workflow.history (
  instance_id  uuid not null references workflow.instances (id),
  seq          integer not null,
  action       text not null,
  from_state   text not null,
  to_state     text not null,
  actor_id     text,
  actor_kind   text not null,
  actor_name   text not null,
  -- The code of the organisation the actor acted for.
  org          text,
  at           timestamptz not null,
  comment      text,
  attachments  jsonb not null default '[]',
  -- The organisations the action assigned, for 派遣.
  assignees    uuid[],
  -- The client's request id: a double submit returns the first outcome instead of acting twice.
  request_id   text,
  details      jsonb not null default '{}',
  primary key (instance_id, seq)
);
create unique index history_request_idx on workflow.history (instance_id, request_id) where request_id is not null;

-- SLA timers: a row per armed deadline. A sweeper fires each in the transaction that marks it
-- fired, claimed with SKIP LOCKED, so across replicas and restarts it fires exactly once.
create table workflow.timers (
  id          uuid primary key,
  instance_id uuid not null references workflow.instances (id),
  state_seq   integer not null,
  kind        text not null check (kind in ('state-sla', 'overall-sla')),
  due_at      timestamptz not null,
  fired_at    timestamptz,
  -- Failed firings (an effect that threw) and the last error: retried on later sweeps, 10 times.
  attempts    integer not null default 0,
  last_error  text
);
create index timers_due_idx on workflow.timers (due_at) where fired_at is null;
create index timers_instance_idx on workflow.timers (instance_id) where fired_at is null;
