-- Kernel storage: the transactional outbox, consumer idempotency and dead letters.
-- PostGIS is the spatial half of the one SQL dialect; every later module relies on it.
create extension if not exists postgis;

-- 发件箱: events written in the same transaction as the change that caused them.
create table kernel.outbox (
  seq          bigserial primary key,
  id           uuid not null unique,
  topic        text not null check (topic ~ '^[a-z0-9_-]+(\.[a-z0-9_-]+)*$' and length(topic) <= 200),
  payload      jsonb not null,
  headers      jsonb not null default '{}'::jsonb,
  created_at   timestamptz not null default now(),
  published_at timestamptz,
  -- A relay's lease on the row while it publishes; expired leases are taken over.
  claimed_until timestamptz,
  claim_token  uuid,
  attempts     integer not null default 0,
  last_error   text
);
-- The relay reads only pending rows, oldest first.
create index outbox_pending_idx on kernel.outbox (seq) where published_at is null;
create index outbox_published_at_idx on kernel.outbox (published_at) where published_at is not null;

-- Consumers record each event id they have applied, in the same transaction as their effect,
-- so a redelivered event is recognised and skipped (at-least-once delivery, exactly-once effect).
create table kernel.consumed_events (
  consumer    text not null,
  event_id    uuid not null,
  consumed_at timestamptz not null default now(),
  primary key (consumer, event_id)
);

-- Events a consumer failed on too often; kept with the reason for an operator to inspect.
create table kernel.dead_letters (
  id         bigserial primary key,
  consumer   text not null,
  event_id   uuid not null,
  topic      text not null,
  payload    jsonb not null,
  reason     text not null,
  attempts   integer not null,
  created_at timestamptz not null default now()
);
create index dead_letters_consumer_idx on kernel.dead_letters (consumer, created_at);
