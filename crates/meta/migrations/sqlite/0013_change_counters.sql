-- Version counters of facts that servers cache (issue 12): a server that changes users,
-- credentials, projects or members bumps `access`; every server reads it every second and
-- drops its caches when it moved, so a change made through one replica applies on the others
-- within about a second.
CREATE TABLE change_counters (
    name     TEXT PRIMARY KEY,
    version  INTEGER NOT NULL
);
