-- pochta schema version 3: the records of the rules of package storage
-- (read tracking, the Sent de-duplication index, the unread index), kept
-- as the rules see them (storage.RecordTx), one row each. Read tracking is
-- a JSON storage.TrackingRecord, as the bbolt backend keeps it; the
-- relational tracking tables of version 1 are not used by this version.
CREATE SEQUENCE tracking_record_ids;
CREATE TABLE tracking_records (
    id  bigint PRIMARY KEY,
    rec jsonb NOT NULL
);

-- The "tracked" index: a message of a user that a tracking record follows.
CREATE TABLE tracked (
    username    text NOT NULL REFERENCES users(address) ON DELETE CASCADE,
    mailbox_id  bigint NOT NULL,
    uid         bigint NOT NULL,
    tracking_id bigint NOT NULL,
    PRIMARY KEY (username, mailbox_id, uid)
);

-- The tracking records a user has sent, oldest first by id.
CREATE TABLE sent_log (
    username    text NOT NULL REFERENCES users(address) ON DELETE CASCADE,
    tracking_id bigint NOT NULL,
    PRIMARY KEY (username, tracking_id)
);

-- Sent de-duplication: the message last stored in a \Sent mailbox with a
-- Message-ID.
CREATE TABLE sent_ids (
    username   text NOT NULL REFERENCES users(address) ON DELETE CASCADE,
    message_id text NOT NULL,
    mailbox_id bigint NOT NULL,
    uid        bigint NOT NULL,
    stored     timestamptz NOT NULL,
    PRIMARY KEY (username, message_id)
);

-- The unread index (storage.UnreadEntry): INBOX messages without \Seen by
-- storage.UnreadDate.
CREATE TABLE unread (
    date       bigint NOT NULL,
    username   text NOT NULL,
    mailbox_id bigint NOT NULL,
    uid        bigint NOT NULL,
    PRIMARY KEY (date, username, mailbox_id, uid)
);
