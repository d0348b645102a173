-- 责任溯源: the audit trail. Append-only records chained by hash, signed Merkle checkpoints.
-- Format: docs/audit-format.md.

create table trust.audit_records (
  -- Position in the chain: 1, 2, 3, … without gaps (assigned under the chain-head lock).
  seq           bigint primary key check (seq > 0),
  id            uuid not null unique,
  at            timestamptz not null,
  actor         text,
  actor_kind    text not null,
  org           text,
  action        text not null,
  resource_type text not null,
  resource_id   text,
  area          text,
  purpose       text,
  request_id    text,
  outcome       text not null check (outcome in ('success', 'denied', 'failed')),
  details       jsonb not null default '{}'::jsonb,
  prev_hash     text not null check (prev_hash ~ '^[0-9a-f]{64}$'),
  hash          text not null check (hash ~ '^[0-9a-f]{64}$')
);
create index audit_records_at_idx on trust.audit_records (at);
create index audit_records_actor_idx on trust.audit_records (actor, seq);
create index audit_records_resource_idx on trust.audit_records (resource_type, resource_id, seq);
create index audit_records_area_idx on trust.audit_records (area, seq);

-- The chain head (last seq and hash), locked by each appending transaction: appends are
-- serialised in commit order, so the chain never forks. A cache only: verify never trusts it.
create table trust.audit_head (
  id   boolean primary key default true check (id),
  seq  bigint not null,
  hash text not null
);
insert into trust.audit_head (seq, hash) values (0, repeat('0', 64));

-- Signing keys: public halves only (the private key stays in its file on the signing node).
create table trust.audit_keys (
  key_id         text primary key check (key_id ~ '^[0-9a-f]{16}$'),
  public_key_pem text not null,
  created_at     timestamptz not null default now(),
  retired_at     timestamptz
);

-- 检查点: a signed Merkle root over the records from_seq..to_seq.
create table trust.audit_checkpoints (
  checkpoint integer primary key check (checkpoint > 0),
  from_seq   bigint not null,
  to_seq     bigint not null unique,
  tree_size  integer not null,
  root       text not null,
  head_hash  text not null,
  prev_root  text,
  created_at timestamptz not null,
  key_id     text not null references trust.audit_keys (key_id),
  signature  text not null,
  check (tree_size = to_seq - from_seq + 1 and tree_size > 0)
);

-- The application can only append: updates, deletes and truncation are refused by the database.
-- (In production the application's role should also be granted only INSERT and SELECT here.)
create function trust.refuse_audit_change() returns trigger language plpgsql as $$
begin
  raise exception 'the audit trail is append-only (% on %)', tg_op, tg_table_name
    using errcode = '42501';
end $$;
create trigger audit_records_append_only before update or delete on trust.audit_records
  for each row execute function trust.refuse_audit_change();
create trigger audit_records_no_truncate before truncate on trust.audit_records
  for each statement execute function trust.refuse_audit_change();
create trigger audit_checkpoints_append_only before update or delete on trust.audit_checkpoints
  for each row execute function trust.refuse_audit_change();
create trigger audit_checkpoints_no_truncate before truncate on trust.audit_checkpoints
  for each statement execute function trust.refuse_audit_change();
