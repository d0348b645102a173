-- NGSI-LD subscriptions and their notifications (订阅与通知). A notification is a row before it is
-- a request: the entity write's outbox event is matched against the subscriptions and the
-- notifications it produces are committed (once per subscription and event) before any is sent,
-- so neither a crash nor a failing receiver loses one; each row records its attempts and outcome.

create table twin.subscriptions (
  tenant text not null,
  id text not null,
  -- The subscription as stored: expanded IRIs, its @context, without status members.
  body jsonb not null,
  -- Expanded entity types it watches (null: any), for matching without reading the body.
  types text[],
  -- Expanded watched attributes (null: any).
  watched text[],
  is_active boolean not null default true,
  expires_at timestamptz,
  -- Periodic subscriptions (timeInterval, seconds) and when each is next due.
  time_interval double precision,
  next_due timestamptz,
  -- Least seconds between two notifications (throttling).
  throttling double precision,
  created_at timestamptz not null,
  modified_at timestamptz not null,
  -- Notification status (§5.2.14 NotificationParams).
  times_sent bigint not null default 0,
  times_failed bigint not null default 0,
  last_notification timestamptz,
  last_success timestamptz,
  last_failure timestamptz,
  last_failure_reason text,
  primary key (tenant, id)
);
create index subscriptions_due_idx on twin.subscriptions (next_due) where time_interval is not null;

create table twin.notifications (
  seq bigserial primary key,
  tenant text not null,
  subscription_id text not null,
  -- The event it answers (an entity change, or a periodic run): one notification per subscription and event.
  event_id uuid not null,
  -- What to send: the endpoint, media type, headers and the notification document.
  request jsonb not null,
  created_at timestamptz not null default now(),
  -- pending → sent | failed (after the last attempt, or a permanent refusal).
  status text not null default 'pending',
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  -- A sender's lease on the row (as the outbox relay's): another sender takes it over when it expires.
  claimed_until timestamptz,
  claim_token uuid,
  last_error text,
  sent_at timestamptz,
  unique (tenant, subscription_id, event_id)
);
create index notifications_due_idx on twin.notifications (next_attempt_at) where status = 'pending';
create index notifications_subscription_idx on twin.notifications (tenant, subscription_id, seq);
