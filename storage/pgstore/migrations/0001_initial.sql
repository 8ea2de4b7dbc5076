-- pochta schema version 1: everything the bbolt backend stores today.
CREATE TABLE users (
    name          text PRIMARY KEY,
    password_hash text NOT NULL,
    settings      jsonb NOT NULL DEFAULT '{}',
    quota_bytes   bigint NOT NULL DEFAULT 0,
    used_bytes    bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mailboxes (
    id             bigserial PRIMARY KEY,
    username       text NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    name           text NOT NULL,
    uidvalidity    bigint NOT NULL,
    uidnext        bigint NOT NULL DEFAULT 1,
    highestmodseq  bigint NOT NULL DEFAULT 1,
    subscribed     boolean NOT NULL DEFAULT false,
    special_use    text NOT NULL DEFAULT '',
    UNIQUE (username, name)
);

-- Bodies are stored once and shared by copies: messages reference them,
-- refcount counts the references and the last one out deletes the body.
CREATE TABLE bodies (
    id        bigserial PRIMARY KEY,
    sha256    bytea NOT NULL,
    size      bigint NOT NULL,
    content   bytea NOT NULL,
    refcount  bigint NOT NULL DEFAULT 0 CHECK (refcount >= 0)
);
CREATE INDEX bodies_sha256 ON bodies (sha256);

CREATE TABLE messages (
    mailbox_id     bigint NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid            bigint NOT NULL,
    modseq         bigint NOT NULL,
    flags          text[] NOT NULL DEFAULT '{}',
    internal_date  timestamptz NOT NULL,
    size           bigint NOT NULL,
    body_id        bigint NOT NULL REFERENCES bodies(id),
    header_summary bytea NOT NULL DEFAULT '',
    envelope       bytea NOT NULL DEFAULT '',
    bodystructure  bytea NOT NULL DEFAULT '',
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);

-- Expunge tombstones feed CONDSTORE/QRESYNC and the change feed.
CREATE TABLE expunged (
    mailbox_id  bigint NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid         bigint NOT NULL,
    modseq      bigint NOT NULL,
    expunged_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);

CREATE TABLE queue (
    id            bigserial PRIMARY KEY,
    sender        text NOT NULL,
    recipients    jsonb NOT NULL DEFAULT '[]',
    body_id       bigint REFERENCES bodies(id),
    status        text NOT NULL DEFAULT 'queued',
    attempts      integer NOT NULL DEFAULT 0,
    next_attempt  timestamptz NOT NULL DEFAULT now(),
    owner         text NOT NULL DEFAULT '',
    lease_until   timestamptz,
    settled_at    timestamptz,
    last_error    text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    header_summary bytea NOT NULL DEFAULT ''
);
CREATE INDEX queue_due ON queue (next_attempt) WHERE settled_at IS NULL;
CREATE INDEX queue_settled ON queue (settled_at) WHERE settled_at IS NOT NULL;

CREATE TABLE daily_counters (
    day     date NOT NULL,
    name    text NOT NULL,
    value   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, name)
);

CREATE TABLE relay_health (
    relay        text PRIMARY KEY,
    state        jsonb NOT NULL DEFAULT '{}',
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alerts_sent (
    key      text PRIMARY KEY,
    sent_at  timestamptz NOT NULL
);

CREATE TABLE tracking (
    token       text PRIMARY KEY,
    username    text NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    message_id  text NOT NULL DEFAULT '',
    recipient   text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE tracking_events (
    token   text NOT NULL REFERENCES tracking(token) ON DELETE CASCADE,
    at      timestamptz NOT NULL,
    detail  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX tracking_events_token ON tracking_events (token, at);

CREATE TABLE web_sessions (
    id          bytea PRIMARY KEY,
    username    text NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    data        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
