package protocol

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzServerCommands runs arbitrary client input through a logged-in,
// selected connection: whatever the bytes, the server never panics and
// the connection ends when the client leaves.
func FuzzServerCommands(f *testing.F) {
	for _, seed := range []string{
		"a FETCH 1:* (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (FROM TO)]<0.10> BINARY[1]<2.3> BINARY.SIZE[1])\r\n",
		"a UID SEARCH RETURN (MIN MAX COUNT SAVE) CHARSET UTF-8 OR (FROM x TO y) NOT (SEEN LARGER 5) SINCE 1-Feb-1994 $\r\n",
		"a STORE 1,2:* +FLAGS.SILENT (\\Seen $Work)\r\nb UID STORE 1 -FLAGS \\Deleted\r\n",
		"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"*\" %) RETURN (CHILDREN STATUS (MESSAGES SIZE))\r\n",
		"a APPEND INBOX (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {5+}\r\nhello\r\nb APPEND INBOX ~{3+}\r\na\x00b\r\n",
		"a IDLE\r\nDONE\r\nb NOOP\r\nc ENABLE IMAP4rev2 UTF8=ACCEPT\r\nd SELECT &Jjo\r\n",
		"a ID (\"name\" \"x\")\r\nb CREATE foo (USE (\\Drafts))\r\nc RENAME a b\r\nd STATUS INBOX (MESSAGES RECENT)\r\ne CLOSE\r\n",
		"a FETCH 0:5 FLAGS\r\nb MOVE 1 Trash\r\nc UID EXPUNGE 1:3\r\nd LOGOUT\r\n",
		"a ENABLE QRESYNC\r\nb SELECT INBOX (QRESYNC (1 2 1:*,5 (1:3 4:6)))\r\nc UID FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 3 VANISHED)\r\n",
		"a STORE 1:* (UNCHANGEDSINCE 0) +FLAGS.SILENT (\\Seen)\r\nb SEARCH MODSEQ \"/flags/\\\\seen\" all 5\r\nc STATUS INBOX (HIGHESTMODSEQ)\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		var panicked atomic.Bool
		srv := New(&Options{
			Caps:         condStoreCaps,
			InsecureAuth: true,
			Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
			OnPanic:      func() { panicked.Store(true) },
			NewSession:   func(*Conn) (Session, *GreetingData, error) { return condStoreSession{&fakeSession{}}, nil, nil },
		})
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeConn(server, nil)
		}()
		var out bytes.Buffer
		read := make(chan struct{})
		go func() {
			defer close(read)
			io.Copy(&out, io.LimitReader(client, 1<<20))
		}()
		client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		client.Write([]byte("l LOGIN alice secret\r\ns SELECT INBOX\r\n"))
		client.Write(in)
		client.Write([]byte("\r\nz LOGOUT\r\n"))
		// The client goes away (the input may leave a literal or IDLE
		// open): the connection must end at once.
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("the connection did not end after the client left, with %q", in)
		}
		<-read
		if panicked.Load() {
			t.Fatalf("panic serving %q", in)
		}
	})
}
