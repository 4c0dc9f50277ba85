-- Each project's signing policy (issue 14): the public keys it trusts (PEM) and whether pulls
-- of images without a trusted signature are refused, as the signing crate's JSON document.
CREATE TABLE signing_policies (
    project      TEXT PRIMARY KEY,
    policy       TEXT NOT NULL,
    updated_at   BIGINT NOT NULL    -- Unix seconds
);
