-- Blob fetches of the pull-through cache under way (issue 15): one server fetches a blob of a
-- repository from its upstream while the others sharing the database wait for it to be
-- stored; the lease is renewed while the fetch runs, and taken over once it ran out.
CREATE TABLE upstream_fetches (
    target    TEXT PRIMARY KEY,   -- REPOSITORY@DIGEST
    owner     TEXT NOT NULL,         -- the fetching server's id
    until_ms  BIGINT NOT NULL        -- Unix milliseconds the lease runs to
);
