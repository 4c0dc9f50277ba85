-- The vulnerability database (issue 13): OSV records imported from sources (the Go
-- database's all.zip, Debian's, Alpine's, an internal mirror), replaced whole by each import.

-- One row per source, named by `gantry vulndb import --source`.
CREATE TABLE vulndb_sources (
    name            TEXT COLLATE "C" PRIMARY KEY,
    location        TEXT COLLATE "C" NOT NULL,     -- the file, directory or URL last imported from
    imported_at_ms  BIGINT NOT NULL,  -- Unix milliseconds
    records         BIGINT NOT NULL,
    malformed       BIGINT NOT NULL,  -- records skipped because they did not parse
    newest_modified TEXT COLLATE "C"               -- RFC 3339: the newest record's `modified`
);

-- The records, as published, with what matching and merging need at hand.
CREATE TABLE advisories (
    source          TEXT COLLATE "C" NOT NULL,
    id              TEXT COLLATE "C" NOT NULL,
    modified        TEXT COLLATE "C" NOT NULL,     -- RFC 3339, as the record says
    severity        TEXT COLLATE "C" NOT NULL,     -- the record's own: UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL
    aliases         TEXT COLLATE "C" NOT NULL,     -- JSON array: the record's own aliases
    merged_severity TEXT COLLATE "C" NOT NULL,     -- after merging by aliases across sources
    severity_from   TEXT COLLATE "C",              -- the record the merged severity comes from
    merged_aliases  TEXT COLLATE "C" NOT NULL,     -- JSON array: every other ID of the record's group
    record          TEXT COLLATE "C" NOT NULL,     -- the OSV JSON as published
    PRIMARY KEY (source, id)
);

-- Which records name which package: the scanner asks by (ecosystem, package).
CREATE TABLE advisory_packages (
    ecosystem  TEXT COLLATE "C" NOT NULL,          -- as OSV writes it: Go, Debian:12, Alpine:v3.19
    package    TEXT COLLATE "C" NOT NULL,
    source     TEXT COLLATE "C" NOT NULL,
    id         TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (ecosystem, package, source, id)
);
CREATE INDEX advisory_packages_source ON advisory_packages (source);

-- Bumped by every import: the scanner rescans stored artifacts when it changes.
CREATE TABLE vulndb_generation (
    singleton  BIGINT PRIMARY KEY CHECK (singleton = 1),
    generation BIGINT NOT NULL
);
INSERT INTO vulndb_generation (singleton, generation) VALUES (1, 0);
