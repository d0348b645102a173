-- Optimistic concurrency for entity writes: a write reads the entity, computes its next content
-- and applies it only if the row is still at the version it read (else it reads again). A single
-- conditional statement replaces BEGIN, SELECT … FOR UPDATE, UPDATE, COMMIT.
alter table twin.entities add column version bigint not null default 1;
