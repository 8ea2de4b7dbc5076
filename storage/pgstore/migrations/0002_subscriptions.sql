-- pochta schema version 2: subscriptions kept by name (RFC 3501 6.3.6,
-- RFC 5258 \NonExistent), as the bbolt backend's "subs" bucket keeps them:
-- deleting a mailbox leaves its name subscribed, renaming one moves it,
-- and a mailbox created again under a subscribed name is subscribed.
-- mailboxes.subscribed is no longer read.
CREATE TABLE subscriptions (
    username text NOT NULL REFERENCES users(address) ON DELETE CASCADE,
    name     text NOT NULL,
    PRIMARY KEY (username, name)
);
