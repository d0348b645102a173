-- Audit records are written, in the transaction of the change they record, to this queue; a
-- sealer chains them into trust.audit_records (under the chain-head lock) moments later. Writers
-- therefore never wait for each other on the chain head: the head lock is held by the sealer only,
-- for one batch at a time. Chain order is seal order, which follows commit order (a record becomes
-- visible to the sealer when its transaction commits). docs/audit-format.md.
create table trust.audit_queue (
  qid           bigserial primary key,
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
  details       jsonb not null default '{}'::jsonb
);
