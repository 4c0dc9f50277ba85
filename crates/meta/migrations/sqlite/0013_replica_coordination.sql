-- Version counters of facts that servers cache (issue 12): a server that changes users,
-- credentials, projects or members bumps `access`; every server reads it every second and
-- drops its caches when it moved, so a change made through one replica applies on the others
-- within about a second.
CREATE TABLE change_counters (
    name     TEXT PRIMARY KEY,
    version  INTEGER NOT NULL
);

-- Firings of schedules (scheduled garbage collection, retention) claimed by
-- one server each: every server looks at the schedules, and the first to insert a firing's row
-- runs it, so a firing runs once however many servers share the database.
CREATE TABLE schedule_firings (
    schedule    TEXT NOT NULL,
    fired_at    INTEGER NOT NULL,  -- Unix seconds: when the schedule fired
    claimed_by  TEXT NOT NULL,  -- the server that ran it
    claimed_at  INTEGER NOT NULL,
    PRIMARY KEY (schedule, fired_at)
);
