// Package message holds the checks every message passes once, at intake,
// whichever way it arrives (SMTP DATA and BDAT, IMAP APPEND, the web's
// send), and the limits the store's record encoder and decoder share.
//
// Promises:
//   - CheckStructure is linear in the size of the message and refuses, with
//     ErrTooDeep, a MIME structure nested deeper than MaxNesting and, with
//     ErrTooManyParts, one of more than MaxParts parts; the store encodes
//     and decodes body structures up to those same limits, so a message it
//     accepted is always fetchable.
//   - Read and ReadAll return a message whose every line ends in CRLF: a
//     bare CR or a bare LF becomes CRLF, nothing else changes. Memory grows
//     with the bytes read, never with a size a client announced; past
//     SpoolAfter, Read keeps the rest in an unlinked, mapped spool file.
//   - CheckFrom accepts a From field only when each of its addresses is
//     the logged-in user's own.
//   - QuoteLocalPart writes an address as RFC 5321 wants it on the wire.
package message
