-- The vulnerability scanner's results and the pull gate's policies (issue 13).

-- Scans, one row per image manifest digest: content addressed, so one scan serves every
-- repository holding the manifest. A row is replaced by every newer scan (on push, on demand,
-- after the vulnerability database changed).
CREATE TABLE scan_results (
    digest       TEXT COLLATE "C" PRIMARY KEY,
    status       TEXT COLLATE "C" NOT NULL,     -- scanned, not-an-image, failed
    generation   BIGINT NOT NULL,   -- the vulnerability database generation matched against
    scanned_ms   BIGINT NOT NULL,   -- Unix milliseconds
    report       TEXT NOT NULL      -- JSON: packages, vulnerabilities (or the failure)
);
CREATE INDEX scan_results_generation ON scan_results (generation);

-- Each project's vulnerability policy for pulls (the pull gate: severity, reachable only,
-- what unscanned images get, the project's allowlist), as the scanner's JSON document.
CREATE TABLE vulnerability_policies (
    project      TEXT COLLATE "C" PRIMARY KEY,
    policy       TEXT NOT NULL,
    updated_at   BIGINT NOT NULL    -- Unix seconds
);

-- System-wide settings, one JSON document each (vulnerability-allowlist: the allowlist every
-- project's pull gate honours).
CREATE TABLE system_settings (
    name         TEXT COLLATE "C" PRIMARY KEY,
    value        TEXT NOT NULL,
    updated_at   BIGINT NOT NULL    -- Unix seconds
);
