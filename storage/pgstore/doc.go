// Package pgstore is pochta's PostgreSQL storage backend, meant to be
// shared by several pochta nodes (issue 13), and its foundations.
//
// Open returns a storage.Store: the rules of package storage over this
// package's storage.Backend. It passes the whole storage conformance suite
// (TestConformance/postgres), and cmd/pochta opens it for
// [message_server] database = "postgres://…". Backup always refuses
// (errors.ErrUnsupported): a PostgreSQL database is backed up with
// pg_dump or pg_basebackup. Several nodes may share a database: what they
// write is consistent, and Listen tells each handle about the others'
// commits too (watch.go).
//
// Promises of the store:
//   - Every write is one PostgreSQL transaction, all of it committed or
//     none; it returns nil only after COMMIT succeeded.
//   - Listen delivers the events of this handle's own commits, in commit
//     order, after each commit (the handle's commits are serialised from
//     COMMIT until their events are out). From the first Listen on, a
//     Listener's hints (a NOTIFY at every commit touching a mailbox or
//     enqueueing, its payload naming the mailbox, "queue" or "mailboxes")
//     make the handle read the mailboxes the hint names (the whole list
//     when it names a change to the list, overflowed, or may have missed
//     notifications) and, for each whose HIGHESTMODSEQ passed the last one
//     it announced, the change feed, and publish other handles' changes as the same events
//     (EventAppend with UID and flags, EventFlags, EventExpunge,
//     EventMailboxes for a mailbox created, renamed or gone, EventQueued
//     for new queue IDs, looking 1,000 below the highest seen for one
//     committed late, EventTracking and EventAccount carried whole in
//     their notifications)
//     with the zero Origin. The read
//     holds the commit lock, and the handle's own events are noted, so no
//     change to a mailbox is announced twice or missed; after a
//     reconnection (MayHaveMissed) the same read catches up. Carried
//     events sent while the listener was away are lost: after an outage
//     the handle announces an EventAccount without a user (drop every
//     cached login) instead; a lost tracking event only delays a web page
//     until its next reload.
//   - A user's mailbox-list writers are serialised by the user's row lock;
//     UIDVALIDITY comes from one shared row (max(last + 1, now)), and a
//     name's UIDNEXT outlives its mailbox (mailbox_graves), so UIDs are
//     never reused across nodes.
//   - Subscriptions are kept by name (migrations/0002_subscriptions.sql).
//   - A message is validated, parsed and encoded as the bbolt backend does
//     it (boltstore.PrepareMessage); the copies of one delivery share one
//     stored body (the bodies table, reference-counted by the database).
//   - The rules of package storage run over RecordTx (records.go), whose
//     records are one transaction's rows (migrations/0003_rule_records.sql);
//     a MailboxTx writes its counters at each change, under the mailbox's
//     row lock.
//   - ReadBody and QueueBody read a message in chunks of at most 256 KiB,
//     each with a query of its own.
//   - A queue entry is one row of the queue table holding its whole
//     storage.QueueEntry as JSON (exact times) with the columns queries
//     select on kept in step (migrations/0004_queue_entries.sql); the
//     rules' claims lock the row (FOR UPDATE), so a lease is exclusive
//     across nodes.
//   - Check reads every user, mailbox and message row; repair moves a bad
//     message into the quarantine table in the same transaction.
//   - Moves between backends (export.go, import.go): Export walks one
//     read-only REPEATABLE READ transaction; Import copies every record a
//     user or an operator can read, with the source's UIDs, modseqs,
//     tracking and queue IDs (the ID sequences are moved past them;
//     mailboxes get new IDs, rewritten wherever a record names one), in
//     batches of one transaction each, a batch's messages with one COPY.
//   - Expunge tombstones older than storage.TombstoneLifetime are swept a
//     minute after Open, then hourly (sweep.go), by the handle that leads
//     that job (Options.Housekeeping, Leading); the mailbox's
//     vanished_floor rises with them, so Changes from before a swept one
//     says VanishedIncomplete.
//
// Promises of the foundations:
//   - Migrate applies the embedded, numbered schema migrations in order, each
//     in its own transaction recorded in schema_version, under a
//     transaction-level advisory lock, so nodes starting together against the
//     same fresh database apply each migration exactly once. Migrations only
//     add; none drops or rewrites data. A database newer than this binary is
//     refused with an error.
//   - The schema (migrations/0001_initial.sql) has a place for every record
//     the bbolt backend keeps; a body shared by copies is stored once and its
//     reference count is kept by the database (triggers), which deletes it
//     with its last copy.
//   - AppendMessage allocates a mailbox's next UID and modseq and inserts the
//     message in one transaction holding the mailbox row lock: across nodes,
//     UIDs in a mailbox are unique and ascending and modseqs monotonic.
//   - ClaimQueue hands each due entry whose lease is absent or expired to
//     exactly one claimant (FOR UPDATE SKIP LOCKED), setting lease_owner and
//     lease_until; an expired lease is taken over.
//   - CountDay, MarkAlerted and SetRelayState keep the daily limits, the
//     limit alerts and the relay's health in rows shared by all nodes: the
//     limits count the whole organisation's mail, and of several nodes
//     noticing the same thing at once exactly one records (and alerts) it.
//   - Leader holds a session-level advisory lock on a connection of its own:
//     at most one node leads; leadership is lost when that connection ends,
//     and Lead, waiting in the server, takes over at once. The store's
//     Leading (storage.Leadership) holds one: the node it answers true on
//     runs the cluster's housekeeping (unread lifetime, queue retention,
//     tombstones); the others try for the lock at most every 5 seconds, so
//     when the leader dies another takes over within a round or two.
//   - AppendMessage, SetFlags and Expunge give every change the mailbox's
//     next modseq and NOTIFY ChannelMailbox at commit; Changes reads the
//     feed from one snapshot, so a node that missed hints catches up from
//     its last modseq without missing a change.
//   - DurabilityWarning names the server settings (synchronous_commit or
//     fsync off) under which a committed, acknowledged message can be lost.
//   - Listener turns NOTIFY on a channel into a coalesced wake-up hint and,
//     after reconnecting, reports that notifications may have been missed.
package pgstore
