package protocol

import (
	"github.com/emersion/go-imap/v2"
)

// NumKind says whether a command names messages by sequence number or by
// UID (the UID prefix).
type NumKind int

// The kinds of message numbers.
const (
	NumKindSeq NumKind = iota + 1
	NumKindUID
)

func (k NumKind) String() string {
	if k == NumKindUID {
		return "uid"
	}
	return "seq"
}

// ErrAuthFailed is what Session.Login returns for a wrong name or password.
var ErrAuthFailed = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeAuthenticationFailed,
	Text: "Authentication failed",
}

// GreetingData changes the greeting.
type GreetingData struct {
	// PreAuth greets with PREAUTH: the connection starts logged in.
	PreAuth bool
}

// Session is what the server needs from the mail store for one
// connection. The server calls its methods from the connection's
// goroutine, one at a time, except Idle, which runs on a goroutine of its
// own while the connection waits for DONE (no other method runs then).
//
// An *imap.Error is sent to the client as it is (NO, BAD, its code); any
// other error becomes NO [SERVERBUG] and is logged. The shape follows
// go-imap v2's imapserver.Session so that code written for one fits the
// other; MODSEQ (CONDSTORE, QRESYNC) comes as fields of the imap options
// and data types, and as the optional SessionQResync and
// SessionCondStore (cmd_condstore.go).
type Session interface {
	// Close is called once when the connection ends.
	Close() error

	// Not authenticated state. AUTHENTICATE PLAIN ends in Login too.
	Login(username, password string) error

	// Authenticated state.
	Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error)
	Create(mailbox string, options *imap.CreateOptions) error
	Delete(mailbox string) error
	Rename(mailbox, newName string, options *imap.RenameOptions) error
	Subscribe(mailbox string) error
	Unsubscribe(mailbox string) error
	List(w *ListWriter, ref string, patterns []string, options *imap.ListOptions) error
	Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error)
	Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error)
	// Poll writes the updates pending for the client after a command
	// (NOOP and CHECK are nothing else); EXPUNGE only when allowExpunge.
	Poll(w *UpdateWriter, allowExpunge bool) error
	// Idle writes updates as they come until stop is closed (RFC 2177).
	Idle(w *UpdateWriter, stop <-chan struct{}) error

	// Selected state.
	Unselect() error
	Expunge(w *ExpungeWriter, uids *imap.UIDSet) error
	Search(kind NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error)
	Fetch(w *FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error
	Store(w *FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error
	Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error)
	Move(w *MoveWriter, numSet imap.NumSet, dest string) error
	Namespace() (*imap.NamespaceData, error)
	// AppendLimit is the largest message APPEND takes (RFC 7889).
	AppendLimit() uint32
}
