-- Sessions of the web UI (issue 16): the cookie's secret is stored as its SHA-256 only; the
-- CSRF token every form of the session carries; an absolute expiry.
CREATE TABLE web_sessions (
    id_digest   TEXT COLLATE "C" PRIMARY KEY,   -- lowercase hex SHA-256 of the cookie's secret
    user_name   TEXT COLLATE "C" NOT NULL,
    csrf        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL
);
CREATE INDEX web_sessions_expires ON web_sessions (expires_ms);
