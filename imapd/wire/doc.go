// Package wire is pochta's IMAP wire format: the command decoder and the
// response encoder (RFC 9051 and RFC 3501 section 9, with LITERAL+ and
// LITERAL- from RFC 7888 and literal8 from RFC 3516). It knows the grammar,
// not the commands: a server reads a tag, a command name and then asks for
// the arguments it expects (an astring, a sequence set, a list...).
//
// Promises:
//   - Memory per command is bounded by Limits, never by a number the client
//     announced: the text of a command outside literals by Limits.Line, a
//     literal read as a string by Limits.Literal, and all such literals of
//     one command by Limits.Command. Buffers grow with the bytes that
//     actually arrive.
//   - A literal over its limit is refused before any of its bytes is
//     buffered. A synchronising literal ({n}) is refused without the
//     continuation request, so the client never sends it. A
//     non-synchronising one ({n+}), whose bytes are on their way, is read
//     and thrown away when it is within Limits.Discard; past that the
//     Decoder reports a fatal error and the connection must be closed. The
//     bytes of a refused literal are never parsed as commands.
//   - Every error is an *Error that says what the client gets: BAD (a
//     syntax error) or NO (TOOBIG), and whether the stream is still in step
//     with the client. After a non-fatal error, SkipCommand finds the start
//     of the next command (discarding non-synchronising literals on the
//     way, bounded by Limits.Discard).
//   - Sequence number 0 and UID 0 are syntax errors (RFC 9051 9: nz-number),
//     so "FETCH 0:5" is BAD.
//   - The Encoder writes what the grammar allows: a string that cannot be
//     quoted is sent as a literal, an empty nstring as NIL, mailbox names
//     in modified UTF-7 unless UTF-8 was enabled, and ENVELOPE address
//     groups as their RFC 3501 group markers.
package wire
