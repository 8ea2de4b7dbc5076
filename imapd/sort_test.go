package imapd

import (
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/envelope"
	"github.com/pochta/pochta/imapd/protocol"
)

func TestBaseSubject(t *testing.T) {
	tests := []struct {
		in, want string
		reply    bool
	}{
		{"Hello", "Hello", false},
		{"", "", false},
		{"   ", "", false},
		{"Re: Hello", "Hello", true},
		{"RE: hello", "hello", true},
		{"Re:Hello", "Hello", true},
		{"Re : Hello", "Hello", true},
		{"Re[2]: Hello", "Hello", true},
		{"Re [2]: Hello", "Hello", true},
		{"Fwd: Hello", "Hello", true},
		{"FW: Hello", "Hello", true},
		{"fw:Hello", "Hello", true},
		{"Re: Re: Fwd: Re: Hello", "Hello", true},
		{"Hello (fwd)", "Hello", true},
		{"Hello (FWD) (fwd)  ", "Hello", true},
		{"Hello(fwd)", "Hello", true},
		{"[pochta-dev] Hello", "Hello", false},
		{"[pochta-dev] Re: Hello", "Hello", true},
		{"Re: [pochta-dev] Re: Hello", "Hello", true},
		{"[a][b] Re: Hello", "Hello", true},
		{"[blob]", "[blob]", false},    // removing the blob would leave nothing
		{"Re: [blob]", "[blob]", true}, // likewise
		{"[Fwd: Hello]", "Hello", true},
		{"[fwd: Re: Hello (fwd)]", "Hello", true},
		{"Re: [Fwd: [x] Hello]", "Hello", true},
		{"[Fwd: Hello", "[Fwd: Hello", false},
		{"Hello\t\r\n  world", "Hello world", false},
		{"  Hello   world  ", "Hello world", false},
		{"Reply to this", "Reply to this", false}, // "Re" without ":"
		{"Fwdx: Hello", "Fwdx: Hello", false},
		{"Re: ", "", true},
		{"=?UTF-8?B?UmU6INCf0YDQuNCy0LXRgg==?=", "Привет", true},
		{"=?ISO-8859-1?Q?Re:_caf=E9?=", "café", true},
		{"[Список] Тема", "Тема", false},
		{"Re: Hello (fwd) ]", "Hello (fwd) ]", true},
	}
	for _, tt := range tests {
		got, reply := baseSubject(tt.in)
		if got != tt.want || reply != tt.reply {
			t.Errorf("baseSubject(%q) = %q, %v; want %q, %v", tt.in, got, reply, tt.want, tt.reply)
		}
	}
}

// TestBaseSubjectLong checks that a hostile subject costs linear time and
// comes out right.
func TestBaseSubjectLong(t *testing.T) {
	in := strings.Repeat("Re: [x] ", 20000) + "end" + strings.Repeat(" (fwd)", 20000)
	if got, _ := baseSubject(in); got != "end" {
		t.Fatalf("got %q", got[:min(len(got), 40)])
	}
}

func TestASCIIUpper(t *testing.T) {
	for in, want := range map[string]string{"abc_Z": "ABC_Z", "ÿa": "ÿA", "": ""} {
		if got := asciiUpper(in); got != want {
			t.Errorf("asciiUpper(%q) = %q, want %q", in, got, want)
		}
	}
	// i;ascii-casemap puts "_" after the letters.
	if !(asciiUpper("zed") < asciiUpper("_x")) {
		t.Error("want ZED before _X")
	}
}

// sortFixture delivers five messages whose keys disagree on every order.
func sortFixture(t *testing.T) (*testEnv, *rawConn) {
	e := newTestEnv(t)
	msgs := []string{
		// 1
		"From: Zed <zed@example.com>\r\nTo: bob@example.com\r\nCc: carol@example.com\r\n" +
			"Subject: Re: banana\r\nDate: Wed, 01 Jan 2025 10:00:00 +0000\r\nMessage-ID: <m1@x>\r\n\r\nshort\r\n",
		// 2: no Date: sorts by its internal date (now), so last by DATE
		"From: \"Anna\" <yak@example.com>\r\nTo: alice@example.com\r\n" +
			"Subject: apple\r\nMessage-ID: <m2@x>\r\n\r\n" + strings.Repeat("long body line\r\n", 50),
		// 3: same sent instant as 1, written in another zone
		"From: mike@example.com\r\nTo: zoe@example.com\r\nCc: adam@example.com\r\n" +
			"Subject: [list] Fwd: Banana\r\nDate: Wed, 01 Jan 2025 12:00:00 +0200\r\nMessage-ID: <m3@x>\r\n" +
			"References: <m1@x>\r\n\r\nmedium body\r\n",
		// 4
		"From: =?UTF-8?Q?=C3=89mile?= <bert@example.com>\r\nTo: Group: ;\r\n" +
			"Subject: =?UTF-8?B?Q2hlcnJ5?=\r\nDate: Tue, 31 Dec 2024 23:00:00 -0500\r\nMessage-ID: <m4@x>\r\n" +
			"In-Reply-To: <m2@x>\r\n\r\nb\r\n",
		// 5
		"From: adam@example.com\r\nTo: Team: x@example.com;\r\n" +
			"Subject: Re: cherry\r\nDate: Mon, 30 Dec 2024 08:00:00 +0000\r\nMessage-ID: <m5@x>\r\n" +
			"References: <m4@x>\r\n\r\nbb\r\n",
	}
	for _, m := range msgs {
		e.appendMsg(alice, "INBOX", []byte(m))
	}
	r := e.raw()
	r.ok(`a LOGIN ` + alice + ` "` + password + `"`)
	r.ok("b SELECT INBOX")
	return e, r
}

func TestSortWire(t *testing.T) {
	_, r := sortFixture(t)
	tests := []struct{ cmd, want string }{
		{"SORT (ARRIVAL) UTF-8 ALL", "* SORT 1 2 3 4 5"},
		{"SORT (REVERSE ARRIVAL) US-ASCII ALL", "* SORT 5 4 3 2 1"},
		// 4 is 2025-01-01 04:00 UTC; 1 and 3 are both 10:00 UTC.
		{"SORT (DATE) UTF-8 ALL", "* SORT 5 4 1 3 2"},
		{"SORT (REVERSE DATE) UTF-8 ALL", "* SORT 2 1 3 4 5"},
		// apple, banana, banana, cherry, cherry (case and markers ignored).
		{"SORT (SUBJECT) UTF-8 ALL", "* SORT 2 1 3 4 5"},
		{"SORT (SUBJECT REVERSE DATE) UTF-8 ALL", "* SORT 2 1 3 4 5"},
		{"SORT (SUBJECT DATE) UTF-8 ALL", "* SORT 2 1 3 5 4"},
		// FROM is the mailbox: adam, bert, mike, yak, zed.
		{"SORT (FROM) UTF-8 ALL", "* SORT 5 4 3 2 1"},
		// TO: a group sorts by its name: alice, bob, Group, Team, zoe.
		{"SORT (TO) UTF-8 ALL", "* SORT 2 1 4 5 3"},
		// CC: none (2, 4, 5) first, then adam, carol.
		{"SORT (CC) UTF-8 ALL", "* SORT 2 4 5 3 1"},
		// Sizes: 162, 893, 190, 179, 156 bytes.
		{"SORT (SIZE) UTF-8 ALL", "* SORT 5 1 4 3 2"},
		{"SORT (DATE) UTF-8 SUBJECT banana", "* SORT 1 3"},
		{"SORT (DATE) UTF-8 NOT SUBJECT banana 2:5", "* SORT 5 4 2"},
		{"SORT (DATE) UTF-8 SUBJECT nothing-like-this", "* SORT"},
		{"UID SORT (REVERSE SIZE) UTF-8 ALL", "* SORT 2 3 4 1 5"},
		{"SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL", "* ESEARCH (TAG \"c\") MIN 5 MAX 2 COUNT 5"},
		{"SORT RETURN () (DATE) UTF-8 ALL", "* ESEARCH (TAG \"c\") ALL 5,4,1,3,2"},
		{"UID SORT RETURN (ALL) (ARRIVAL) UTF-8 ALL", "* ESEARCH (TAG \"c\") UID ALL 1:5"},
		{"SORT RETURN (COUNT) (DATE) UTF-8 SUBJECT nothing-like-this", "* ESEARCH (TAG \"c\") COUNT 0"},
		// Threads ordered by their first message's sent date.
		{"THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD (5 4)(1 3)(2)"},
		{"THREAD REFERENCES UTF-8 ALL", "* THREAD (1 3)(2 4 5)"},
		{"THREAD REFERENCES UTF-8 SUBJECT nothing-like-this", "* THREAD"},
		{"UID THREAD REFERENCES UTF-8 1:2", "* THREAD (1)(2)"},
	}
	for _, tt := range tests {
		lines := r.ok("c " + tt.cmd)
		if len(lines) != 1 || strings.TrimRight(lines[0], "\r\n") != tt.want {
			t.Errorf("%s: got %q, want %q", tt.cmd, lines, tt.want)
		}
	}
}

func TestSortBadInput(t *testing.T) {
	_, r := sortFixture(t)
	for cmd, want := range map[string]string{
		"d SORT (DATE) KOI8-R ALL":              "d NO [BADCHARSET (US-ASCII UTF-8)]",
		"d THREAD REFERENCES ISO-8859-5 ALL":    "d NO [BADCHARSET (US-ASCII UTF-8)]",
		"d SORT (DATE) ALL":                     "d BAD",
		"d SORT () UTF-8 ALL":                   "d BAD",
		"d SORT (SPEED) UTF-8 ALL":              "d BAD",
		"d SORT (REVERSE) UTF-8 ALL":            "d BAD",
		"d SORT DATE UTF-8 ALL":                 "d BAD",
		"d SORT RETURN (SAVE) (DATE) UTF-8 ALL": "d BAD",
		"d SORT (DISPLAYFROM) UTF-8 ALL":        "d BAD", // SORT=DISPLAY is not offered
		"d THREAD SUBJECT UTF-8 ALL":            "d BAD",
		"d THREAD REFERENCES UTF-8":             "d BAD",
	} {
		r.send(cmd)
		if got := r.expect("d "); !strings.HasPrefix(got, want) {
			t.Errorf("%s: got %q, want %s", cmd, got, want)
		}
	}
	caps := r.ok("e CAPABILITY")
	for _, c := range []string{" SORT ", " ESORT ", " THREAD=REFERENCES ", " THREAD=ORDEREDSUBJECT "} {
		if !strings.Contains(caps[0]+" ", c) {
			t.Errorf("CAPABILITY lacks %s: %s", c, caps[0])
		}
	}
}

// TestSortDisplay checks the RFC 5957 keys on envelopes: the display name,
// else the address, else a group's name.
func TestSortDisplay(t *testing.T) {
	envs := []*envelope.Envelope{
		{From: []envelope.Address{{Name: "Zed", Mailbox: "aaa", Host: "example.com"}}},
		{From: []envelope.Address{{Mailbox: "bob", Host: "example.com"}}},
		{From: []envelope.Address{{Name: "=?UTF-8?Q?Anna?=", Mailbox: "zzz", Host: "example.com"}}},
		{From: []envelope.Address{{Mailbox: "crew"}, {Mailbox: "x", Host: "example.com"}, {}}},
		{},
	}
	msgs := make([]metaMsg, len(envs))
	for i, env := range envs {
		msgs[i] = metaMsg{ref: msgRef{seq: uint32(i + 1)}, env: env}
	}
	items := make([]sortItem, len(msgs))
	for i := range msgs {
		items[i] = sortItem{ref: msgs[i].ref, keys: newSortEntry(&msgs[i])}
	}
	sortItems(items, []protocol.SortCriterion{{Key: protocol.SortDisplayFrom}})
	var got []uint32
	for _, it := range items {
		got = append(got, it.ref.seq)
	}
	if want := []uint32{5, 3, 2, 4, 1}; !slices.Equal(got, want) {
		t.Errorf("DISPLAYFROM order %v, want %v", got, want)
	}
}

// TestSortAfterChanges checks that the keys SORT keeps between commands
// follow new mail and expunges.
func TestSortAfterChanges(t *testing.T) {
	e, r := sortFixture(t)
	if got := r.ok("c SORT (DATE) UTF-8 ALL"); strings.TrimSpace(got[0]) != "* SORT 5 4 1 3 2" {
		t.Fatalf("first SORT: %q", got)
	}
	e.appendMsg(alice, "INBOX", []byte("From: a@example.com\r\nSubject: new\r\n"+
		"Date: Sun, 01 Dec 2024 00:00:00 +0000\r\n\r\nx\r\n"))
	r.ok("c NOOP")
	if got := r.ok("c SORT (DATE) UTF-8 ALL"); strings.TrimSpace(got[0]) != "* SORT 6 5 4 1 3 2" {
		t.Fatalf("SORT after a delivery: %q", got)
	}
	r.ok(`c STORE 5 +FLAGS.SILENT (\Deleted)`)
	r.ok("c EXPUNGE")
	if got := r.ok("c SORT (DATE) UTF-8 ALL"); strings.TrimSpace(got[0]) != "* SORT 5 4 1 3 2" {
		t.Fatalf("SORT after an expunge: %q", got)
	}
	// Repeated SORTs answer from the kept order (sortOrder): a subset, UIDs
	// instead of sequence numbers (UID 5 is gone, sequence 5 is UID 6),
	// other keys, and the same keys again after the other key's SORT.
	for _, c := range []struct{ cmd, want string }{
		{"c SORT (DATE) UTF-8 2:4", "* SORT 4 3 2"},
		{"c UID SORT (DATE) UTF-8 ALL", "* SORT 6 4 1 3 2"},
		{"c SORT (REVERSE DATE) UTF-8 ALL", "* SORT 2 1 3 4 5"}, // 1 and 3 tie: UID order
		{"c SORT (REVERSE DATE) UTF-8 1,5", "* SORT 1 5"},
		{"c SORT (DATE) UTF-8 ALL", "* SORT 5 4 1 3 2"},
	} {
		if got := r.ok(c.cmd); strings.TrimSpace(got[0]) != c.want {
			t.Errorf("%s: %q, want %q", c.cmd, got, c.want)
		}
	}
}

// TestSortItemsInlinePrefix: the inline first key (16 bytes) orders strings
// as strings.Compare does, also when they share 8, 16 or more bytes, are
// prefixes of one another or are empty; reverse and ties (by UID) too.
func TestSortItemsInlinePrefix(t *testing.T) {
	subjects := []string{
		"MEETING NOTES 2", "MEETING NOTES 10", "MEETING NOTES", "MEETING", "",
		"MEETING NOTES FOR MONDAY B", "MEETING NOTES FOR MONDAY A", "MEETING NOTES FOR MONDAY",
		"MEETINGS", "ZZZZZZZZZZZZZZZZZ", "ZZZZZZZZZZZZZZZZ", "A", "MEETING NOTES 2",
		"\xff\xff\xff\xff\xff\xff\xff\xff\xff", "\xff\xff\xff\xff\xff\xff\xff\xff",
	}
	for _, reverse := range []bool{false, true} {
		items := make([]sortItem, len(subjects))
		for i, s := range subjects {
			items[i] = sortItem{ref: msgRef{uid: imap.UID(i + 1)}, keys: &sortEntry{subject: s}}
		}
		sortItems(items, []protocol.SortCriterion{{Key: protocol.SortSubject, Reverse: reverse}})
		for i := 1; i < len(items); i++ {
			a, b := items[i-1], items[i]
			c := strings.Compare(a.keys.subject, b.keys.subject)
			if reverse {
				c = -c
			}
			if c > 0 || (c == 0 && a.ref.uid > b.ref.uid) {
				t.Errorf("reverse=%v: %q (UID %d) sorted before %q (UID %d)", reverse, a.keys.subject, a.ref.uid, b.keys.subject, b.ref.uid)
			}
		}
	}
}

// TestSortOrdersKeepTwo: a view keeps the orders of its last two sorts;
// a third sort takes the slot used longest ago, and an order is reused
// only for the keys it was made with and the messages it holds.
func TestSortOrdersKeepTwo(t *testing.T) {
	entries := []*sortEntry{{subject: "B", sent: 1}, {subject: "A", sent: 3}, {subject: "C", sent: 2}}
	refs := []msgRef{{seq: 1, uid: 10}, {seq: 2, uid: 20}, {seq: 3, uid: 30}}
	byKey := func(k protocol.SortKey) []protocol.SortCriterion { return []protocol.SortCriterion{{Key: k}} }
	sortBy := func(so *sortOrders, keys []protocol.SortCriterion) {
		items := make([]sortItem, len(refs))
		for i := range refs {
			items[i] = sortItem{ref: refs[i], keys: entries[i]}
		}
		sortItems(items, keys)
		so.keep(keys, items)
	}
	var so sortOrders
	sortBy(&so, byKey(protocol.SortSubject))
	sortBy(&so, byKey(protocol.SortDate))
	check := func(keys []protocol.SortCriterion, want []uint32, wantOK bool) {
		t.Helper()
		got, ok := so.reuse(keys, refs, entries, protocol.NumKindUID)
		if ok != wantOK || !slices.Equal(got, want) {
			t.Errorf("reuse %v: %v %v, want %v %v", keys, got, ok, want, wantOK)
		}
	}
	check(byKey(protocol.SortSubject), []uint32{20, 10, 30}, true)
	check(byKey(protocol.SortDate), []uint32{10, 30, 20}, true)
	check(byKey(protocol.SortSize), nil, false)
	// SUBJECT was used last, so SIZE takes DATE's slot.
	check(byKey(protocol.SortSubject), []uint32{20, 10, 30}, true)
	sortBy(&so, byKey(protocol.SortSize))
	check(byKey(protocol.SortDate), nil, false)
	check(byKey(protocol.SortSubject), []uint32{20, 10, 30}, true)
	// A message the order does not hold means sorting again.
	extra := append(slices.Clone(entries), &sortEntry{subject: "D"})
	moreRefs := append(slices.Clone(refs), msgRef{seq: 4, uid: 40})
	if _, ok := so.reuse(byKey(protocol.SortSubject), moreRefs, extra, protocol.NumKindUID); ok {
		t.Error("an order was reused for a message it does not hold")
	}
}
