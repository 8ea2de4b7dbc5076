package trace

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Session states. Only the step to stateOff matters to the hot path, which
// reads the state without the mutex.
const (
	statePending int32 = iota // before login: lines are kept in pending
	stateLive                 // a traced user: lines are logged as they come
	stateOff                  // anybody else: nothing is done any more
)

// Directions of a line, as the "dir" attribute writes them.
const (
	dirClient = "C"
	dirServer = "S"
)

// Session is the trace of one connection. Its Write is the protocol
// library's debug writer; the server calls LoggedIn or LoginFailed when a
// login is decided. Write may be called from several goroutines (go-imap
// writes IDLE updates and BYE from others than the connection's).
type Session struct {
	tracer *Tracer
	proto  Protocol
	id     string
	remote string
	state  atomic.Int32

	mu      sync.Mutex
	user    string
	pending []record // before login, at most pendingLines
	dropped int      // lines dropped from pending
	parser  parser
	client  stream
	server  stream
}

// record is one line kept before login.
type record struct {
	at   time.Time
	dir  string
	line string
}

// parser turns one protocol's lines into masked lines, which it passes to
// Session.emit. line handles one complete line and returns how many raw
// bytes follow it that are not lines (an IMAP literal, an SMTP BDAT chunk),
// or noRaw; raw is called once those bytes have passed. Both are called
// with the Session's mutex held.
type parser interface {
	line(s *Session, dir string, l line) (follow int64)
	raw(s *Session, dir string, n int64)
}

// Write implements io.Writer for the protocol library's debug hook. It
// never fails, because the library would fail the connection's read or write
// with it.
func (s *Session) Write(p []byte) (int, error) {
	if s.state.Load() == stateOff {
		return len(p), nil
	}
	dir, ok := direction()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Load() == stateOff || !ok {
		return len(p), nil
	}
	st := &s.client
	if dir == dirServer {
		st = &s.server
	}
	st.feed(p, func(l line) int64 {
		return s.parser.line(s, dir, l)
	}, func(n int64) {
		s.parser.raw(s, dir, n)
	})
	return len(p), nil
}

// LoggedIn decides the connection's fate once user has logged in: traced
// from here on, with the lines kept so far, or never again.
func (s *Session) LoggedIn(user string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tracer.Enabled(user) {
		s.state.Store(stateOff)
		s.pending, s.parser = nil, nil
		s.client, s.server = stream{}, stream{}
		return
	}
	s.user = user
	s.goLive()
}

// LoginFailed notes a failed login as user: when user is traced, the
// connection is traced from here on (until a login as someone else).
func (s *Session) LoginFailed(user string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Load() == statePending && s.tracer.Enabled(user) {
		s.user = user
		s.goLive()
	}
}

// goLive writes out the lines kept before login. Called with mu held.
func (s *Session) goLive() {
	if s.state.Load() == stateLive {
		return
	}
	if s.dropped > 0 {
		s.write(s.pending[0].at, "-", fmt.Sprintf("<%d earlier lines not kept>", s.dropped))
	}
	for _, r := range s.pending {
		s.write(r.at, r.dir, r.line)
	}
	s.pending, s.dropped = nil, 0
	s.state.Store(stateLive)
}

// emit records one line: logged at once when live, kept when pending.
// Called with mu held.
func (s *Session) emit(dir, text string) {
	now := time.Now()
	if s.state.Load() == stateLive {
		s.write(now, dir, text)
		return
	}
	if len(s.pending) == pendingLines {
		copy(s.pending, s.pending[1:])
		s.pending = s.pending[:pendingLines-1]
		s.dropped++
	}
	s.pending = append(s.pending, record{at: now, dir: dir, line: text})
}

// write logs one line with the time it was seen, so lines written out at
// login keep their own times.
func (s *Session) write(at time.Time, dir, text string) {
	ctx := context.Background()
	h := s.tracer.log.Handler()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	r := slog.NewRecord(at, slog.LevelInfo, "protocol trace", 0)
	r.AddAttrs(
		slog.String("proto", s.proto.String()),
		slog.String("session", s.id),
		slog.String("remote", s.remote),
		slog.String("user", s.user),
		slog.String("dir", dir),
		slog.String("line", text),
	)
	_ = h.Handle(ctx, r)
}

// Call sites that reach Write: what the library read passes through
// io.TeeReader, what it wrote through io.MultiWriter (see the package
// comment). The return addresses are resolved once and then compared.
var (
	readSite, writeSite atomic.Uintptr
)

const (
	teeReaderRead    = "io.(*teeReader).Read"
	multiWriterWrite = "io.(*multiWriter).Write"
)

// direction tells a client line (read by the library) from a server line
// (written by it) by who called Session.Write. ok is false for any other
// caller, whose bytes are then ignored rather than guessed at.
func direction() (dir string, ok bool) {
	var pc [1]uintptr
	// 0 is runtime.Callers, 1 direction, 2 Session.Write, 3 its caller.
	if runtime.Callers(3, pc[:]) == 0 {
		return "", false
	}
	switch pc[0] {
	case readSite.Load():
		return dirClient, true
	case writeSite.Load():
		return dirServer, true
	}
	f, _ := runtime.CallersFrames(pc[:]).Next()
	switch f.Function {
	case teeReaderRead:
		readSite.Store(pc[0])
		return dirClient, true
	case multiWriterWrite:
		writeSite.Store(pc[0])
		return dirServer, true
	}
	return "", false
}

// line is one protocol line as the parsers see it: at most maxLine bytes of
// text without the line end, its full length, and its last bytes (for the
// literal marker at the end of an IMAP line that was cut).
type line struct {
	text string
	size int64 // bytes on the wire, line end included
	cut  bool  // text is only the beginning of the line
	end  string
}

// tailLen is how much of a line's end is kept besides the first maxLine
// bytes: enough for an IMAP literal marker ("~{" 19 digits "+}").
const tailLen = 32

// noRaw is what parser.line returns when no raw bytes follow the line.
const noRaw = -1

// stream splits one direction's bytes into lines, and passes over the raw
// bytes a parser says follow a line.
type stream struct {
	head   []byte // the current line's first maxLine bytes
	tail   []byte // its last tailLen bytes
	size   int64  // its length so far
	skip   int64  // raw bytes still to pass over
	rawLen int64  // the length of the raw bytes being passed over
}

// feed splits p, calling onLine for every complete line and onRaw after the
// raw bytes that onLine announced.
func (st *stream) feed(p []byte, onLine func(line) int64, onRaw func(n int64)) {
	for len(p) > 0 {
		if st.skip > 0 {
			n := min(int64(len(p)), st.skip)
			st.skip -= n
			p = p[n:]
			if st.skip == 0 {
				onRaw(st.rawLen)
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			st.add(p)
			return
		}
		st.add(p[:i+1])
		p = p[i+1:]
		switch n := onLine(st.take()); {
		case n == 0:
			onRaw(0)
		case n > 0:
			st.skip, st.rawLen = n, n
		}
	}
}

// add appends part of a line, keeping at most maxLine bytes of its start
// and tailLen of its end.
func (st *stream) add(p []byte) {
	st.size += int64(len(p))
	if room := maxLine + 2 - len(st.head); room > 0 {
		// Two more than maxLine, so that a line of exactly maxLine bytes
		// keeps its CRLF and is not taken for a cut one.
		st.head = append(st.head, p[:min(room, len(p))]...)
	}
	// Kept for every line, however it arrives in pieces: a marker split
	// between two reads must still be found.
	st.tail = append(st.tail, p[max(0, len(p)-tailLen):]...)
	if len(st.tail) > tailLen {
		st.tail = append(st.tail[:0], st.tail[len(st.tail)-tailLen:]...)
	}
}

// take returns the complete line and starts the next one.
func (st *stream) take() line {
	l := line{size: st.size}
	if st.size <= maxLine+2 {
		l.text = string(trimEOL(st.head))
		l.end = l.text
	} else {
		l.cut = true
		l.text = string(st.head[:maxLine])
		l.end = string(trimEOL(st.tail))
	}
	st.head, st.tail, st.size = st.head[:0], st.tail[:0], 0
	return l
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// shown is the text to log for l: its text, with a note when it was cut.
func (l line) shown(text string) string {
	if !l.cut {
		return text
	}
	return fmt.Sprintf("%s <cut; %d bytes in all>", text, l.size)
}
