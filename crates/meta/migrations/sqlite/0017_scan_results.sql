-- The vulnerability scanner's results (issue 13), one row per image manifest digest: content
-- addressed, so one scan serves every repository holding the manifest. A row is replaced by
-- every newer scan (on push, on demand, after the vulnerability database changed).
CREATE TABLE scan_results (
    digest       TEXT PRIMARY KEY,
    status       TEXT NOT NULL,     -- scanned, not-an-image, failed
    generation   BIGINT NOT NULL,   -- the vulnerability database generation matched against
    scanned_ms   BIGINT NOT NULL,   -- Unix milliseconds
    report       TEXT NOT NULL      -- JSON: packages, vulnerabilities (or the failure)
);
CREATE INDEX scan_results_generation ON scan_results (generation);
