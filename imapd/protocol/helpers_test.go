package protocol

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// testCaps is imapd's capability list.
var testCaps = imap.CapSet{
	imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}, imap.CapLiteralPlus: {}, imap.CapNamespace: {},
	imap.CapUIDPlus: {}, imap.CapMove: {}, imap.CapESearch: {}, imap.CapSearchRes: {},
	imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapSpecialUse: {}, imap.CapChildren: {},
	imap.CapStatusSize: {}, imap.CapBinary: {}, imap.CapSASLIR: {}, imap.CapUnselect: {},
	imap.CapEnable: {}, imap.CapIdle: {}, imap.CapLiteralMinus: {}, imap.CapUTF8Accept: {}, imap.CapID: {},
}

// testMessage is the one message of the fake INBOX.
const testMessage = "From: Ann <ann@example.org>\r\nSubject: hello\r\nContent-Type: text/plain\r\n\r\nHi there\r\n"

// fakeSession is a Session over one in-memory INBOX, recording what the
// commands asked for.
type fakeSession struct {
	mu       sync.Mutex
	calls    []string
	appended []string
	tracker  *SessionTracker
}

func (f *fakeSession) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeSession) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeSession) Close() error { return nil }
func (f *fakeSession) Login(user, pass string) error {
	f.record("LOGIN %s", user)
	if user != "alice" || pass != "secret" {
		return ErrAuthFailed
	}
	return nil
}
func (f *fakeSession) Select(name string, o *imap.SelectOptions) (*imap.SelectData, error) {
	f.record("SELECT %s", name)
	if name != "INBOX" {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
	}
	return &imap.SelectData{
		Flags:          []imap.Flag{imap.FlagSeen, imap.FlagDeleted},
		PermanentFlags: []imap.Flag{imap.FlagSeen, imap.FlagDeleted, imap.FlagWildcard},
		NumMessages:    1, UIDNext: 2, UIDValidity: 7,
	}, nil
}
func (f *fakeSession) Create(name string, o *imap.CreateOptions) error {
	f.record("CREATE %s", name)
	return nil
}
func (f *fakeSession) Delete(name string) error { f.record("DELETE %s", name); return nil }
func (f *fakeSession) Rename(a, b string, o *imap.RenameOptions) error {
	f.record("RENAME %s %s", a, b)
	return nil
}
func (f *fakeSession) Subscribe(name string) error   { f.record("SUBSCRIBE %s", name); return nil }
func (f *fakeSession) Unsubscribe(name string) error { f.record("UNSUBSCRIBE %s", name); return nil }
func (f *fakeSession) List(w *ListWriter, ref string, patterns []string, o *imap.ListOptions) error {
	f.record("LIST %q %q", ref, patterns)
	for _, name := range []string{"INBOX", "Entwürfe", "Archive/2024"} {
		for _, p := range patterns {
			if MatchList(name, '/', ref, p) {
				if err := w.WriteList(&imap.ListData{Mailbox: name, Delim: '/', Attrs: []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}}); err != nil {
					return err
				}
				break
			}
		}
	}
	return nil
}
func (f *fakeSession) Status(name string, o *imap.StatusOptions) (*imap.StatusData, error) {
	n := uint32(1)
	return &imap.StatusData{Mailbox: name, NumMessages: &n, UIDNext: 2, UIDValidity: 7}, nil
}
func (f *fakeSession) Append(name string, r imap.LiteralReader, o *imap.AppendOptions) (*imap.AppendData, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.appended = append(f.appended, string(b))
	f.mu.Unlock()
	return &imap.AppendData{UID: 2, UIDValidity: 7}, nil
}
func (f *fakeSession) Poll(w *UpdateWriter, allowExpunge bool) error {
	if f.tracker == nil {
		return nil
	}
	return f.tracker.Poll(w, allowExpunge)
}
func (f *fakeSession) Idle(w *UpdateWriter, stop <-chan struct{}) error {
	if err := w.WriteNumMessages(2); err != nil {
		return err
	}
	<-stop
	return nil
}
func (f *fakeSession) Unselect() error { f.record("UNSELECT"); return nil }
func (f *fakeSession) Expunge(w *ExpungeWriter, uids *imap.UIDSet) error {
	f.record("EXPUNGE %v", uids)
	return nil
}
func (f *fakeSession) Search(kind NumKind, c *imap.SearchCriteria, o *imap.SearchOptions) (*imap.SearchData, error) {
	f.record("SEARCH %s %+v", kind, *c)
	return &imap.SearchData{All: imap.SeqSetNum(1), Min: 1, Max: 1, Count: 1}, nil
}
func (f *fakeSession) Fetch(w *FetchWriter, set imap.NumSet, o *imap.FetchOptions) error {
	f.record("FETCH %v", set)
	m := w.CreateMessage(1)
	if o.UID {
		m.WriteUID(1)
	}
	if o.Flags {
		m.WriteFlags([]imap.Flag{imap.FlagSeen})
	}
	for _, bs := range o.BodySection {
		b := ExtractBodySection([]byte(testMessage), bs)
		wc := m.WriteBodySection(bs, int64(len(b)))
		wc.Write(b)
		wc.Close()
	}
	for _, bs := range o.BinarySection {
		b := ExtractBinarySection([]byte(testMessage), bs)
		wc := m.WriteBinarySection(bs, int64(len(b)))
		wc.Write(b)
		wc.Close()
	}
	return m.Close()
}
func (f *fakeSession) Store(w *FetchWriter, set imap.NumSet, flags *imap.StoreFlags, o *imap.StoreOptions) error {
	f.record("STORE %v %d %v", set, flags.Op, flags.Flags)
	return nil
}
func (f *fakeSession) Copy(set imap.NumSet, dest string) (*imap.CopyData, error) {
	f.record("COPY %v %s", set, dest)
	return &imap.CopyData{UIDValidity: 7, SourceUIDs: imap.UIDSetNum(1), DestUIDs: imap.UIDSetNum(5)}, nil
}
func (f *fakeSession) Move(w *MoveWriter, set imap.NumSet, dest string) error {
	f.record("MOVE %v %s", set, dest)
	return w.WriteCopyData(&imap.CopyData{UIDValidity: 7, SourceUIDs: imap.UIDSetNum(1), DestUIDs: imap.UIDSetNum(5)})
}
func (f *fakeSession) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Delim: '/'}}}, nil
}
func (f *fakeSession) AppendLimit() uint32 { return 1000 }

// testConn is a raw client connection to a server over a fakeSession.
type testConn struct {
	t    *testing.T
	c    net.Conn
	r    *bufio.Reader
	sess *fakeSession
	// server is the server's side of the connection.
	server *Conn
}

func startServer(t *testing.T, opts Options) *testConn {
	t.Helper()
	sess := &fakeSession{}
	return startServerWith(t, opts, sess, sess)
}

// startServerWith is startServer with a Session of the test's own (one
// that wraps fake, which records the calls).
func startServerWith(t *testing.T, opts Options, session Session, sess *fakeSession) *testConn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if opts.Caps == nil {
		opts.Caps = testCaps
	}
	opts.InsecureAuth = true
	conns := make(chan *Conn, 1)
	opts.NewSession = func(c *Conn) (Session, *GreetingData, error) {
		conns <- c
		return session, nil, nil
	}
	srv := New(&opts)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		srv.ServeConn(c, nil)
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	tc := &testConn{t: t, c: c, r: bufio.NewReader(c), sess: sess}
	tc.expect("* OK [CAPABILITY ")
	tc.server = <-conns
	return tc
}

func (tc *testConn) send(s string) {
	tc.t.Helper()
	if _, err := io.WriteString(tc.c, s); err != nil {
		tc.t.Fatalf("send %q: %v", s, err)
	}
}

// line reads one response line (without CRLF); "" after the connection
// closed.
func (tc *testConn) line() string {
	tc.t.Helper()
	tc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := tc.r.ReadString('\n')
	if err != nil && l == "" {
		return ""
	}
	return strings.TrimRight(l, "\r\n")
}

// expect reads a line and checks its beginning.
func (tc *testConn) expect(prefix string) string {
	tc.t.Helper()
	l := tc.line()
	if !strings.HasPrefix(l, prefix) {
		tc.t.Fatalf("got %q, want a line starting with %q", l, prefix)
	}
	return l
}

// until reads lines up to the tagged response of tag and returns them all.
func (tc *testConn) until(tag string) []string {
	tc.t.Helper()
	var lines []string
	for {
		l := tc.line()
		if l == "" {
			tc.t.Fatalf("connection closed before the %s response; got %q", tag, lines)
		}
		lines = append(lines, l)
		if strings.HasPrefix(l, tag+" ") {
			return lines
		}
	}
}

// login logs in as alice.
func (tc *testConn) login() {
	tc.t.Helper()
	tc.send("l1 LOGIN alice secret\r\n")
	tc.expect("l1 OK [CAPABILITY ")
}
