-- pochta schema version 1: every record the bbolt backend keeps (see
-- storage/*.go), shaped so several nodes can share it. Later migrations
-- only add (tables, columns, indexes); none drops or rewrites data.
--
-- Encoded blobs (bytea) hold the same encodings the bbolt backend uses, so
-- moving between backends copies them verbatim.

-- Store-wide values: the last UIDVALIDITY handed out ("uidvalidity"), so a
-- new mailbox's UIDVALIDITY is max(last + 1, now) across all nodes.
CREATE TABLE store_meta (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO store_meta (key, value) VALUES ('uidvalidity', 0);

-- Accounts. The address is the login, lower-cased by the store.
CREATE TABLE users (
    address       text PRIMARY KEY,
    admin         boolean NOT NULL DEFAULT false,
    password_hash bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    settings      jsonb NOT NULL DEFAULT '{}',  -- storage.Settings
    web_prefs     jsonb NOT NULL DEFAULT '{}'   -- storage.WebPrefs
);

-- Folders, with the counters STATUS and SELECT read from one row. Every
-- change to a mailbox's messages updates its row, which serialises the
-- mailbox's writers across nodes: UIDNEXT and HIGHESTMODSEQ only grow.
CREATE TABLE mailboxes (
    id             bigserial PRIMARY KEY,
    username       text NOT NULL REFERENCES users(address) ON DELETE CASCADE,
    name           text NOT NULL,
    special_use    text NOT NULL DEFAULT '',
    uidvalidity    bigint NOT NULL CHECK (uidvalidity BETWEEN 1 AND 4294967295),
    uidnext        bigint NOT NULL DEFAULT 1 CHECK (uidnext BETWEEN 1 AND 4294967296),
    subscribed     boolean NOT NULL DEFAULT false,
    messages       bigint NOT NULL DEFAULT 0 CHECK (messages >= 0),
    unseen         bigint NOT NULL DEFAULT 0 CHECK (unseen >= 0),
    size           bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
    highestmodseq  bigint NOT NULL DEFAULT 1 CHECK (highestmodseq >= 1),
    -- Tombstones up to this modseq are gone (swept); Changes since an
    -- older modseq cannot list every expunge.
    vanished_floor bigint NOT NULL DEFAULT 0,
    UNIQUE (username, name)
);

-- A deleted mailbox's name remembers its UIDNEXT, so a mailbox created
-- again under that name never reuses a UID.
CREATE TABLE mailbox_graves (
    username text NOT NULL REFERENCES users(address) ON DELETE CASCADE,
    name     text NOT NULL,
    uidnext  bigint NOT NULL,
    PRIMARY KEY (username, name)
);

-- Message bodies big enough to share, stored once and referenced by every
-- copy (messages and queue entries). refcount is kept by the triggers below:
-- it is the number of rows referring to the body, and the last one out
-- deletes it.
CREATE TABLE bodies (
    id       bigserial PRIMARY KEY,
    sha256   bytea NOT NULL CHECK (length(sha256) = 32),
    size     bigint NOT NULL CHECK (size >= 0),
    content  bytea NOT NULL,
    refcount bigint NOT NULL DEFAULT 0 CHECK (refcount >= 0)
);
CREATE INDEX bodies_sha256 ON bodies (sha256);

-- One message in one mailbox. A copy's bytes are own followed by the shared
-- body when shared_body_id is set (own is then its header and whatever
-- differs between copies).
CREATE TABLE messages (
    mailbox_id     bigint NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid            bigint NOT NULL CHECK (uid BETWEEN 1 AND 4294967295),
    modseq         bigint NOT NULL CHECK (modseq >= 1),  -- its last change
    flags          text[] NOT NULL DEFAULT '{}',
    seen           boolean GENERATED ALWAYS AS ('\Seen' = ANY (flags)) STORED,
    internal_date  timestamptz NOT NULL,
    size           bigint NOT NULL CHECK (size >= 0),
    own            bytea NOT NULL,
    shared_body_id bigint REFERENCES bodies(id),
    -- The parsed envelope and body structure (the bbolt "parsed" record),
    -- so FETCH never re-parses.
    parsed         bytea NOT NULL,
    -- Message-ID of a copy in Sent, for recognising a client's duplicate
    -- APPEND of a message the server already filed there.
    message_id     text,
    PRIMARY KEY (mailbox_id, uid)
);
-- The change feed: messages whose last change is after a modseq.
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);
-- The lifetime sweep reads unread messages oldest first.
CREATE INDEX messages_unread_date ON messages (internal_date) WHERE NOT seen;
CREATE INDEX messages_message_id ON messages (mailbox_id, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX messages_shared_body ON messages (shared_body_id) WHERE shared_body_id IS NOT NULL;

-- Expunge tombstones (RFC 7162 VANISHED), swept after TombstoneLifetime.
CREATE TABLE expunged (
    mailbox_id  bigint NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid         bigint NOT NULL,
    modseq      bigint NOT NULL,
    expunged_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
CREATE INDEX expunged_at ON expunged (expunged_at);

-- Records `pochta check` could not decode, set aside for repair.
CREATE TABLE quarantine (
    id          bigserial PRIMARY KEY,
    username    text NOT NULL,
    mailbox     text NOT NULL,
    mailbox_id  bigint NOT NULL,
    uid         bigint NOT NULL,
    error       text NOT NULL,
    quarantined timestamptz NOT NULL DEFAULT now(),
    meta        bytea,
    parsed      bytea,
    body        bytea
);

-- Read tracking of submitted messages (storage.SentMessage).
CREATE TABLE tracking (
    id         bigserial PRIMARY KEY,
    sender     text NOT NULL,
    message_id text NOT NULL DEFAULT '',
    subject    text NOT NULL DEFAULT '',
    date       timestamptz NOT NULL,
    -- The sender's copy in Sent while it exists.
    sent_box   bigint,
    sent_uid   bigint
);
CREATE INDEX tracking_sender ON tracking (sender, id);
CREATE INDEX tracking_sent_copy ON tracking (sent_box, sent_uid) WHERE sent_box IS NOT NULL;

-- One recipient of a tracked message, with the local copy it is tracked by
-- while that copy is unread.
CREATE TABLE tracking_recipients (
    tracking_id bigint NOT NULL REFERENCES tracking(id) ON DELETE CASCADE,
    address     text NOT NULL,
    external    boolean NOT NULL DEFAULT false,
    state       text NOT NULL,
    changed     timestamptz NOT NULL,
    box         bigint,
    uid         bigint,
    PRIMARY KEY (tracking_id, address)
);
CREATE INDEX tracking_recipients_copy ON tracking_recipients (box, uid) WHERE box IS NOT NULL;

-- The outbound queue (storage.QueueEntry). due_at is when the entry is
-- next due, as the bbolt due index keeps it: an outbox entry at its next
-- attempt or the end of its lease, whichever is later; a held one at
-- held_until; sent and failed entries never.
CREATE TABLE queue (
    id             bigserial PRIMARY KEY,
    rev            bigint NOT NULL DEFAULT 1,
    status         text NOT NULL DEFAULT 'outbox' CHECK (status IN ('outbox', 'held', 'sent', 'failed')),
    source         text NOT NULL CHECK (source IN ('user', 'system')),
    username       text NOT NULL DEFAULT '',
    sender         text NOT NULL DEFAULT '',  -- envelope sender; '' is the null sender
    rcpt_to        text[] NOT NULL DEFAULT '{}',
    rcpt_cc        text[] NOT NULL DEFAULT '{}',
    rcpt_bcc       text[] NOT NULL DEFAULT '{}',
    subject        text NOT NULL DEFAULT '',
    mime_type      text NOT NULL DEFAULT '',
    message_id     text NOT NULL DEFAULT '',
    queued_at      timestamptz NOT NULL DEFAULT now(),
    attempts       integer NOT NULL DEFAULT 0,
    sent_on        timestamptz,
    last_error     text NOT NULL DEFAULT '',
    size           bigint NOT NULL DEFAULT 0,
    next_attempt   timestamptz NOT NULL DEFAULT now(),
    held_until     timestamptz,
    last_attempt   timestamptz,
    recipients     jsonb NOT NULL DEFAULT '[]',  -- []storage.QueueRecipient
    delay_notified boolean NOT NULL DEFAULT false,
    tracking_id    bigint,
    counted_day    text NOT NULL DEFAULT '',
    lease_owner    text NOT NULL DEFAULT '',
    lease_until    timestamptz,
    -- The message as relayed: own, then the shared body when set.
    own            bytea NOT NULL DEFAULT '',
    shared_body_id bigint REFERENCES bodies(id),
    due_at         timestamptz GENERATED ALWAYS AS (
        CASE status
            WHEN 'outbox' THEN greatest(next_attempt, coalesce(lease_until, next_attempt))
            WHEN 'held' THEN held_until
        END) STORED
);
CREATE INDEX queue_due ON queue (due_at, id) WHERE due_at IS NOT NULL;
CREATE INDEX queue_status ON queue (status, id);
CREATE INDEX queue_user ON queue (username, id);
CREATE INDEX queue_message_id ON queue (message_id);
CREATE INDEX queue_shared_body ON queue (shared_body_id) WHERE shared_body_id IS NOT NULL;

-- Messages counted toward a day's limits (username '' is the system-wide
-- count), and the daily-limit alerts already sent, shared by all nodes so
-- the limits count the whole organisation's mail and an alert goes out once.
CREATE TABLE daily_counters (
    day      text NOT NULL,  -- "2006-01-02" in the limits' time zone
    username text NOT NULL DEFAULT '',
    count    bigint NOT NULL DEFAULT 0 CHECK (count >= 0),
    PRIMARY KEY (day, username)
);
CREATE TABLE daily_alerts (
    day      text NOT NULL,
    username text NOT NULL DEFAULT '',
    sent_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, username)
);

-- The relay's health as last recorded ('' = up): one row, updated under its
-- row lock, so a change of state (and its alert) is recorded once.
CREATE TABLE relay_state (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    state      text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO relay_state DEFAULT VALUES;

-- Web interface sessions, by the SHA-256 of their secret token.
CREATE TABLE web_sessions (
    token_sha256   bytea PRIMARY KEY,
    username       text NOT NULL REFERENCES users(address) ON DELETE CASCADE,
    csrf           text NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    -- SHA-256 of the password hash the session was made under: changing
    -- the password ends it.
    password_stamp bytea NOT NULL
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
CREATE INDEX web_sessions_user ON web_sessions (username);

-- Shared body reference counts, kept by the database itself whatever code
-- path adds or removes a copy.
CREATE FUNCTION pochta_body_ref() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.shared_body_id IS NOT NULL
       AND (TG_OP = 'DELETE' OR NEW.shared_body_id IS DISTINCT FROM OLD.shared_body_id) THEN
        UPDATE bodies SET refcount = refcount - 1 WHERE id = OLD.shared_body_id;
        DELETE FROM bodies WHERE id = OLD.shared_body_id AND refcount = 0;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.shared_body_id IS NOT NULL
       AND (TG_OP = 'INSERT' OR NEW.shared_body_id IS DISTINCT FROM OLD.shared_body_id) THEN
        UPDATE bodies SET refcount = refcount + 1 WHERE id = NEW.shared_body_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_body_ref AFTER INSERT OR DELETE OR UPDATE OF shared_body_id ON messages
    FOR EACH ROW EXECUTE FUNCTION pochta_body_ref();
CREATE TRIGGER queue_body_ref AFTER INSERT OR DELETE OR UPDATE OF shared_body_id ON queue
    FOR EACH ROW EXECUTE FUNCTION pochta_body_ref();
