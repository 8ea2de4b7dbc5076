// Package protocol is pochta's IMAP4rev2/IMAP4rev1 server protocol: the
// connection state machine (not authenticated, authenticated, selected,
// logout), STARTTLS, IDLE, and every command, over the wire format of
// package wire. It knows nothing of storage: each connection's Session
// (imapd's, over storage.Store) answers the commands, and MailboxTracker
// with SessionTracker keep sequence numbers right across the sessions that
// share a mailbox.
//
// A command is found by name in the cmd_*.go file of its family:
// cmd_any.go (CAPABILITY, NOOP, LOGOUT, ID), cmd_auth.go (STARTTLS, LOGIN,
// AUTHENTICATE, ENABLE), cmd_mailbox.go (SELECT ... EXPUNGE), cmd_list.go,
// cmd_append.go, cmd_fetch.go, cmd_store.go, cmd_search.go,
// cmd_copy_move.go, cmd_idle.go, cmd_condstore.go (RFC 7162's additions
// to the others). The dispatch table is in server.go.
//
// Promises:
//   - A command is checked against the state first, then parsed, then
//     served; a malformed one is BAD with a reason and the connection goes
//     on (an unknown command before login too). Only a run of bad
//     commands (maxBadCommands, maxBadBeforeLogin before login), or a
//     stream that cannot be followed (wire.Error.Fatal), ends it, with
//     BYE.
//   - The bytes of a refused literal never run as commands (see wire).
//     Before login only LITERAL- applies (non-synchronising literals up
//     to 4096 bytes); after login LITERAL+, with an APPEND over the limit
//     read and thrown away up to AppendLimit plus wire.DefaultDiscard;
//     CAPABILITY lists the one that applies, never both (RFC 7888 4).
//   - IDLE ends at DONE (any case) or, at the first byte that cannot
//     begin DONE, with a tagged BAD sent at once (RFC 2177).
//   - A bad mailbox name (not modified UTF-7) is BAD [CLIENTBUG], never a
//     server error; a Session error that is not an *imap.Error is NO
//     [SERVERBUG] and logged.
//   - Only capabilities in Options.Caps are advertised, in the order
//     go-imap v2 used, and only their commands are accepted.
//   - One response is written at a time (Conn's response lock); a
//     FetchResponseWriter holds it until closed. Updates are written after
//     a command and before its tagged OK, without EXPUNGE after FETCH,
//     STORE and SEARCH (RFC 9051 7.5.1).
//   - A panic while serving a connection is recovered, logged, reported
//     to Options.OnPanic and closes only that connection.
//
// Deadlines: 30 s to read a command once it started, 35 minutes to wait
// for a logged-in client's next command or for DONE, 5 minutes for an
// APPEND literal and for each response. An embedding server shortens the
// waits through the net.Conn it passes (imapd's guardedConn does).
//
// CONDSTORE and QRESYNC (RFC 7162): their parameters and modifiers are
// read in cmd_condstore.go and carried in the imap option and data types
// (FetchOptions.ModSeq and ChangedSince, SelectData.HighestModSeq,
// SearchCriteria.ModSeq...) and FetchWriter (VANISHED, UNCHANGEDSINCE,
// MODIFIED); a resync is the optional SessionQResync, HIGHESTMODSEQ on
// demand SessionCondStore. Once a client enabled CONDSTORE, unsolicited
// FETCH responses carry MODSEQ; once QRESYNC, expunges are VANISHED.
package protocol
