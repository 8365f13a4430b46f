-- API tokens of server mode. Only a SHA-256 hash of each token is kept.
CREATE TABLE api_tokens (
    hash       TEXT   PRIMARY KEY,
    tenant     TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
