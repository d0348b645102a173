-- The areas' revision: bumped by every statement that changes trust.areas, in the same
-- transaction, so a process holding areas in memory (the point-location index) can tell with one
-- cheap read whether its copy is still current.
create table trust.area_revision (
  -- Exactly one row.
  singleton boolean primary key default true check (singleton),
  revision  bigint not null default 0
);
insert into trust.area_revision (singleton, revision) values (true, 0);

create function trust.bump_area_revision() returns trigger
language plpgsql as $$
begin
  update trust.area_revision set revision = revision + 1;
  return null;
end;
$$;

-- Per statement, not per row: a bulk load of thousands of areas bumps the revision once. Writers
-- to trust.areas queue on the revision row until they commit; area changes are rare admin work.
create trigger areas_bump_revision
  after insert or update or delete or truncate on trust.areas
  for each statement execute function trust.bump_area_revision();
