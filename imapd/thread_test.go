package imapd

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/imapd/protocol"
)

// tm is a test message: num, sent minute, subject, Message-ID, references.
func tm(num uint32, minute int, subject, id string, refs ...string) threadMsg {
	base, reply := baseSubject(subject)
	return threadMsg{
		num:        num,
		date:       time.Date(2026, 1, 1, 0, minute, 0, 0, time.UTC),
		subject:    asciiUpper(base),
		reply:      reply,
		messageID:  id,
		references: refs,
	}
}

// render writes threads as num[child,child]; a dummy is "*".
func render(nodes []protocol.ThreadNode) string {
	var b strings.Builder
	var walk func(n protocol.ThreadNode)
	walk = func(n protocol.ThreadNode) {
		if n.Num == 0 {
			b.WriteByte('*')
		} else {
			b.WriteString(strconv.Itoa(int(n.Num)))
		}
		if len(n.Children) > 0 {
			b.WriteByte('[')
			for i, c := range n.Children {
				if i > 0 {
					b.WriteByte(',')
				}
				walk(c)
			}
			b.WriteByte(']')
		}
	}
	for i, n := range nodes {
		if i > 0 {
			b.WriteByte(' ')
		}
		walk(n)
	}
	return b.String()
}

func TestThreadReferences(t *testing.T) {
	tests := []struct {
		name string
		msgs []threadMsg
		want string
	}{
		{"chain", []threadMsg{
			tm(1, 1, "a", "a"), tm(2, 2, "Re: a", "b", "a"), tm(3, 3, "Re: a", "c", "a", "b"),
		}, "1[2[3]]"},
		{"siblings sorted by date", []threadMsg{
			tm(1, 1, "a", "a"), tm(2, 5, "Re: a", "b", "a"), tm(3, 3, "Re: a", "c", "a"),
		}, "1[3,2]"},
		{"threads sorted by date", []threadMsg{
			tm(1, 9, "x", "x"), tm(2, 1, "y", "y"),
		}, "2 1"},
		{"missing parent, two children: a dummy stays at the top", []threadMsg{
			tm(1, 1, "p", "p", "gone"), tm(2, 2, "q", "q", "gone"),
		}, "*[1,2]"},
		{"missing parent, one child: promoted", []threadMsg{
			tm(1, 1, "p", "p", "gone"),
		}, "1"},
		{"missing middle of a chain: the dummy goes, its child moves up", []threadMsg{
			tm(1, 1, "a", "a"), tm(2, 2, "Re: a", "c", "a", "gone"),
		}, "1[2]"},
		{"loop between two messages", []threadMsg{
			tm(1, 1, "a", "a", "b"), tm(2, 2, "b", "b", "a"),
		}, "2[1]"},
		{"message refers to itself", []threadMsg{
			tm(1, 1, "a", "a", "a"),
		}, "1"},
		{"loop inside References", []threadMsg{
			tm(1, 1, "a", "a"), tm(2, 2, "Re: a", "b", "a", "x", "a", "x"),
		}, "1[2]"},
		{"duplicate Message-ID: only the first owns it", []threadMsg{
			tm(1, 1, "a", "a"), tm(2, 2, "b", "a"), tm(3, 3, "Re: a", "c", "a"),
		}, "1[3] 2"},
		{"no Message-ID", []threadMsg{
			tm(1, 1, "a", ""), tm(2, 2, "b", ""),
		}, "1 2"},
		{"References order links messages that have no parent", []threadMsg{
			tm(1, 1, "a", "a"), tm(2, 2, "b", "b"), tm(3, 3, "c", "c", "b", "a"), tm(4, 4, "d", "d", "a"),
		}, "2[1[3,4]]"},
		{"step 1B moves a message that step 1A had placed", []threadMsg{
			tm(1, 1, "c", "c", "x", "a"), tm(2, 2, "a", "a", "b"), tm(3, 3, "b", "b"), tm(4, 4, "x", "x"),
		}, "3[2[1]] 4"},
		{"same subject, reply under the original", []threadMsg{
			tm(1, 1, "Hello", "a"), tm(2, 2, "Re: Hello", "b"),
		}, "1[2]"},
		{"same subject, neither a reply: both under a dummy", []threadMsg{
			tm(1, 1, "Hello", "a"), tm(2, 2, "hello", "b"),
		}, "*[1,2]"},
		{"same subject, the table keeps the non-reply even when later", []threadMsg{
			tm(1, 1, "Re: Hello", "a"), tm(2, 2, "Hello", "b"),
		}, "2[1]"},
		{"same subject as a dummy thread: joins it", []threadMsg{
			tm(1, 1, "s", "p", "gone"), tm(2, 2, "s", "q", "gone"), tm(3, 3, "Re: s", "r"),
		}, "*[1,2,3]"},
		{"empty subjects are not merged", []threadMsg{
			tm(1, 1, "", "a"), tm(2, 2, "Re:", "b"),
		}, "1 2"},
		{"equal dates keep mailbox order", []threadMsg{
			tm(1, 1, "x", "x"), tm(2, 1, "y", "y"), tm(3, 1, "z", "z"),
		}, "1 2 3"},
		// imaptest's "thread": message 3 breaks 1 -> 3, which message 2's
		// References made, although its own link 2 -> 3 would be a loop.
		{"step 1B drops the old parent even when the new link is refused", []threadMsg{
			tm(3, 3, "", "a"), tm(1, 1, "", "b", "a", "c"), tm(2, 2, "", "c", "b"),
		}, "2[1] 3"},
		{"no messages", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := render(threadReferences(tt.msgs)); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestThreadOrderedSubject(t *testing.T) {
	msgs := []threadMsg{
		tm(1, 1, "A", ""), tm(2, 2, "B", ""), tm(3, 5, "Re: A", ""),
		tm(4, 3, "a", ""), tm(5, 4, "C", ""), tm(6, 6, "Re: C", ""),
	}
	if got, want := render(threadOrderedSubject(msgs)), "1[4,3] 2 5[6]"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestThreadReferencesDeepChain threads a 20,000-message reply chain (each
// refers to all before it would be quadratic; here each to its parent).
func TestThreadReferencesDeepChain(t *testing.T) {
	const n = 20000
	msgs := make([]threadMsg, n)
	for i := range msgs {
		id := "m" + strconv.Itoa(i)
		if i == 0 {
			msgs[i] = tm(uint32(i+1), 0, "deep", id)
		} else {
			msgs[i] = tm(uint32(i+1), 0, "Re: deep", id, "m"+strconv.Itoa(i-1))
		}
	}
	nodes := threadReferences(msgs)
	depth := 0
	for len(nodes) == 1 {
		depth++
		nodes = nodes[0].Children
	}
	if depth != n || len(nodes) != 0 {
		t.Fatalf("chain depth %d, want %d", depth, n)
	}
}
