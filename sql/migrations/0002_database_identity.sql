-- The identity of this database: a namespace in Redis is bound to the database that first
-- persisted it (persistence/binding.py), so that two deployments sharing a namespace but
-- not a database are refused instead of each persisting the other's sessions.
--
-- At most one row (the primary key is a boolean that must be true). The row is NOT made here
-- but by the first ranker process that needs it: a database cloned from a migrated template
-- (CREATE DATABASE ... TEMPLATE, as the test suite does) would otherwise share its template's
-- identity with every other clone.
CREATE TABLE IF NOT EXISTS database_identity (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    database_id  uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
