package protocol

import (
	"bytes"

	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// sortSession is fakeSession with SORT and THREAD: it records the keys and
// criteria and answers fixed numbers.
type sortSession struct {
	fakeSession
}

func (s *sortSession) Sort(kind NumKind, keys []SortCriterion, c *imap.SearchCriteria) ([]uint32, error) {
	s.record("SORT %s %v %d", kind, keys, len(c.Header))
	return []uint32{3, 1, 2}, nil
}

func (s *sortSession) Thread(kind NumKind, alg imap.ThreadAlgorithm, c *imap.SearchCriteria) ([]ThreadNode, error) {
	s.record("THREAD %s %s", kind, alg)
	return []ThreadNode{{Num: 2}, {Num: 3, Children: []ThreadNode{{Num: 6}}}}, nil
}

// serveSort runs in (after login and SELECT) through a connection to a
// sortSession and returns what the server wrote, the session, and whether
// a panic was recovered. With leave, the client goes away right after
// writing (the input may leave a literal open) and the output is partial.
func serveSort(t testing.TB, in []byte, leave bool) (string, *sortSession, bool) {
	client, server := net.Pipe()
	var panicked atomic.Bool
	caps := testCaps.Copy()
	caps[imap.CapSort] = struct{}{}
	caps[imap.CapESort] = struct{}{}
	caps["THREAD=REFERENCES"] = struct{}{}
	sess := &sortSession{}
	srv := New(&Options{
		Caps:         caps,
		InsecureAuth: true,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnPanic:      func() { panicked.Store(true) },
		NewSession:   func(*Conn) (Session, *GreetingData, error) { return sess, nil, nil },
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
	if leave {
		client.Close()
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		client.Close()
		t.Fatalf("the connection did not end with %q", in)
	}
	client.Close()
	<-read
	return out.String(), sess, panicked.Load()
}

func TestSortAndThreadCommands(t *testing.T) {
	tests := []struct {
		in, want, call string
	}{
		{"a SORT (REVERSE DATE subject) UTF-8 FROM x\r\n", "* SORT 3 1 2\r\na OK", "SORT seq [{DATE true} {SUBJECT false}] 1"},
		{"a UID SORT (ARRIVAL) us-ascii ALL\r\n", "* SORT 3 1 2\r\na OK", "SORT uid [{ARRIVAL false}] 0"},
		{"a SORT RETURN (MIN MAX ALL COUNT) (SIZE) UTF-8 ALL\r\n", "* ESEARCH (TAG \"a\") MIN 3 MAX 2 ALL 3,1:2 COUNT 3\r\na OK", "SORT seq [{SIZE false}] 0"},
		{"a UID SORT RETURN () (CC) UTF-8 ALL\r\n", "* ESEARCH (TAG \"a\") UID ALL 3,1:2\r\na OK", "SORT uid [{CC false}] 0"},
		{"a SORT (DATE) {5+}\r\nUTF-8 ALL\r\n", "* SORT 3 1 2\r\na OK", "SORT seq [{DATE false}] 0"},
		{"a THREAD REFERENCES UTF-8 ALL\r\n", "* THREAD (2)(3 6)\r\na OK", "THREAD seq REFERENCES"},
		{"a UID THREAD references US-ASCII SUBJECT x\r\n", "* THREAD (2)(3 6)\r\na OK", "THREAD uid REFERENCES"},
		{"a SORT (DATE) KOI8-R ALL\r\n", "a NO [BADCHARSET (US-ASCII UTF-8)]", ""},
		{"a SORT (DATE) KOI8-R BOGUS\r\n", "a BAD", ""},
		{"a THREAD ORDEREDSUBJECT UTF-8 ALL\r\n", "a BAD", ""}, // not offered here
		{"a SORT (DISPLAYFROM) UTF-8 ALL\r\n", "a BAD", ""},    // SORT=DISPLAY not offered
		{"a SORT (" + strings.Repeat("DATE ", 40) + "SIZE) UTF-8 ALL\r\n", "a BAD", ""},
		{"a SORT RETURN (PARTIAL 1:2) (DATE) UTF-8 ALL\r\n", "a BAD", ""},
	}
	for _, tt := range tests {
		out, sess, panicked := serveSort(t, []byte(tt.in), false)
		if panicked {
			t.Fatalf("%q: panic", tt.in)
		}
		i := strings.Index(out, "s OK")
		j := strings.Index(out, "* BYE")
		if i < 0 || j < i {
			t.Fatalf("%q: unexpected output %q", tt.in, out)
		}
		got := out[strings.Index(out[i:], "\r\n")+i+2 : j]
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("%q: got %q, want it to start with %q", tt.in, got, tt.want)
		}
		calls := sess.called()
		last := ""
		if n := len(calls); n > 0 && (strings.HasPrefix(calls[n-1], "SORT") || strings.HasPrefix(calls[n-1], "THREAD")) {
			last = calls[n-1]
		}
		if last != tt.call {
			t.Errorf("%q: session saw %q, want %q", tt.in, last, tt.call)
		}
	}
}

// FuzzSortThread runs arbitrary SORT and THREAD arguments: never a panic,
// and the connection ends when the client leaves.
func FuzzSortThread(f *testing.F) {
	for _, seed := range []string{
		"a SORT (REVERSE DATE SUBJECT) UTF-8 OR FROM x (TO y LARGER 5)",
		"a UID SORT RETURN (MIN MAX ALL COUNT) (ARRIVAL) US-ASCII $",
		"a THREAD REFERENCES UTF-8 NOT SEEN",
		"a SORT (DATE) {3+}\r\nabc ALL",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if _, _, panicked := serveSort(t, in, true); panicked {
			t.Fatalf("panic serving %q", in)
		}
	})
}
