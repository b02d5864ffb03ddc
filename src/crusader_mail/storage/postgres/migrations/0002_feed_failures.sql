-- crusader-mail schema 2: a feed's failures in a row kept with its cache (three fail the run),
-- and whether it was ever read (a feed remembered only by its failures is not: what it holds
-- when it is first read is backlog). Rows of schema 1: read, no failure.
ALTER TABLE feed_cache
    ADD COLUMN failures   integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    ADD COLUMN ever_read  boolean NOT NULL DEFAULT true;
