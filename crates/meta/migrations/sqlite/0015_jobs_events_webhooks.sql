-- The job backbone, the event outbox and webhooks (issue 12).

-- Durable background work. Any server claims a due job (a lease it renews while running), so a
-- job whose server dies is claimed again when the lease runs out. Rows stay as the history.
CREATE TABLE jobs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL,     -- gc, retention, usage-snapshot, webhook, ...
    unique_key     TEXT UNIQUE,       -- a job enqueued again under its key adds nothing (a schedule firing)
    queue          TEXT,              -- jobs of one queue run one at a time, in id order
    subject        TEXT,              -- what the job is about, for listings (project:NAME, webhook:ID)
    payload        TEXT NOT NULL,     -- JSON, as the job's kind reads it
    state          TEXT NOT NULL,     -- queued, running, succeeded, failed
    attempts       INTEGER NOT NULL DEFAULT 0,
    max_attempts   INTEGER NOT NULL,
    run_after_ms   INTEGER NOT NULL,  -- Unix milliseconds: not claimed before
    lease_owner    TEXT,              -- the server running it
    lease_until_ms INTEGER,
    progress       TEXT,
    result         TEXT,              -- JSON, when it succeeded
    last_error     TEXT,
    created_ms     INTEGER NOT NULL,
    started_ms     INTEGER,
    finished_ms    INTEGER
);
CREATE INDEX jobs_due ON jobs (state, run_after_ms);
CREATE INDEX jobs_queue ON jobs (queue, id) WHERE queue IS NOT NULL;
CREATE INDEX jobs_subject ON jobs (subject, id);
CREATE INDEX jobs_kind ON jobs (kind, id);

-- Firings become jobs with a unique key.
DROP TABLE schedule_firings;

-- What happened, written in the transaction that made it happen; consumers read in id order
-- from their cursor. Ids follow commit order: every write transaction is serialized.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    type        TEXT NOT NULL,     -- artifact.pushed, artifact.deleted, ...
    project     TEXT,              -- NULL for system-wide events
    repository  TEXT,
    at_ms       INTEGER NOT NULL,
    data        TEXT NOT NULL      -- JSON
);
CREATE INDEX events_project ON events (project, id);

CREATE TABLE event_cursors (
    consumer  TEXT PRIMARY KEY,
    last_id   INTEGER NOT NULL
);

CREATE TABLE webhooks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    project      TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    url          TEXT NOT NULL,
    event_types  TEXT NOT NULL,    -- JSON array of event types
    secret       TEXT NOT NULL,    -- the HMAC key (the receiver holds it too)
    enabled      INTEGER NOT NULL DEFAULT 1,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX webhooks_project ON webhooks (project);
