-- Failed sign-ins per account and per client address (auth::limiter), in the database so
-- every node sharing it counts the same attempts. Rows are forgotten once their window and
-- lock are over.
CREATE TABLE sign_in_limits (
    key          TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    last_ms      BIGINT NOT NULL,
    locked_until BIGINT
);
CREATE INDEX sign_in_limits_by_age ON sign_in_limits (last_ms);
