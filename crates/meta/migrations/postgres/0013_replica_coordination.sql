-- Version counters of facts that servers cache (issue 12): a server that changes users,
-- credentials, projects or members bumps `access`; every server reads it every second and
-- drops its caches when it moved, so a change made through one replica applies on the others
-- within about a second.
CREATE TABLE change_counters (
    name     TEXT COLLATE "C" PRIMARY KEY,
    version  BIGINT NOT NULL
);

-- Firings of schedules (scheduled garbage collection, retention) claimed by
-- one server each: every server looks at the schedules, and the first to insert a firing's row
-- runs it, so a firing runs once however many servers share the database.
CREATE TABLE schedule_firings (
    schedule    TEXT COLLATE "C" NOT NULL,
    fired_at    BIGINT NOT NULL,  -- Unix seconds: when the schedule fired
    claimed_by  TEXT COLLATE "C" NOT NULL,  -- the server that ran it
    claimed_at  BIGINT NOT NULL,
    PRIMARY KEY (schedule, fired_at)
);
