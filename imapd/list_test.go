package imapd

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// rawLines runs a tagged command and returns its untagged lines without
// their line ends.
func rawLines(r *rawConn, cmd string) []string {
	var out []string
	for _, l := range r.ok(cmd) {
		out = append(out, strings.TrimRight(l, "\r\n"))
	}
	return out
}

// RFC 5258 3.5 (imaptest listext): with RECURSIVEMATCH a parent that is
// not subscribed is listed with CHILDINFO for its subscribed children, but
// not when those children match the patterns and are listed themselves.
func TestListRecursiveMatchChildInfoOnlyForUnlistedChildren(t *testing.T) {
	e := newTestEnv(t)
	r := e.raw()
	r.ok(fmt.Sprintf("l LOGIN %s %q", alice, password))
	r.ok("c1 CREATE a/b")
	r.ok("s1 SUBSCRIBE a/b")

	got := rawLines(r, `x LIST (SUBSCRIBED RECURSIVEMATCH) "" (a)`)
	if !slices.Contains(got, `* LIST (\HasChildren) "/" a (CHILDINFO ("SUBSCRIBED"))`) {
		t.Errorf("pattern a: %q, want a with CHILDINFO", got)
	}
	got = rawLines(r, `y LIST (SUBSCRIBED RECURSIVEMATCH) "" (a a/b)`)
	if slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, `"/" a (CHILDINFO`) }) {
		t.Errorf("patterns a a/b: %q, want no CHILDINFO for a (a/b is listed itself)", got)
	}
	if !slices.ContainsFunc(got, func(l string) bool { return strings.HasSuffix(l, `"/" a/b`) }) {
		t.Errorf("patterns a a/b: %q, want a/b listed", got)
	}
}

// RFC 5258 3 and its example 5 (imaptest listext): a subscribed mailbox
// that was deleted stays subscribed (RFC 3501 6.3.6) and LIST (SUBSCRIBED)
// names it (\Subscribed \NonExistent); LSUB names it \Noselect, a plain
// LIST not at all, RECURSIVEMATCH counts it for its parent's CHILDINFO,
// and UNSUBSCRIBE removes it.
func TestListSubscribedDeletedMailboxIsNonExistent(t *testing.T) {
	e := newTestEnv(t)
	r := e.raw()
	r.ok(fmt.Sprintf("l LOGIN %s %q", alice, password))
	r.ok("c1 CREATE Fruit/Banana")
	r.ok("c2 CREATE Fruit/Peach")
	r.ok("s1 SUBSCRIBE Fruit/Banana")
	r.ok("s2 SUBSCRIBE Fruit/Peach")
	r.ok("d1 DELETE Fruit/Peach")

	for _, tc := range []struct {
		cmd       string
		want, not []string
	}{
		{
			cmd: `a LIST (SUBSCRIBED) "" "Fruit/*"`,
			want: []string{
				`* LIST (\HasNoChildren \Subscribed) "/" Fruit/Banana`,
				`* LIST (\NonExistent \HasNoChildren \Subscribed) "/" Fruit/Peach`,
			},
		},
		{
			cmd:  `b LSUB "" "Fruit/*"`,
			want: []string{`* LSUB (\Noselect \HasNoChildren \Subscribed) "/" Fruit/Peach`},
		},
		{
			cmd:  `c LIST "" "Fruit/*"`,
			want: []string{`* LIST (\HasNoChildren) "/" Fruit/Banana`},
			not:  []string{"Peach"},
		},
		{
			cmd:  `d LIST "" "Fruit/*" RETURN (SUBSCRIBED)`,
			want: []string{`* LIST (\HasNoChildren \Subscribed) "/" Fruit/Banana`},
			not:  []string{"Peach"},
		},
		{
			cmd:  `e LIST (SUBSCRIBED RECURSIVEMATCH) "" "Fruit/B*"`,
			want: []string{`* LIST (\HasNoChildren \Subscribed) "/" Fruit/Banana`},
			not:  []string{"Peach"},
		},
	} {
		got := rawLines(r, tc.cmd)
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("%s: %q, want %q", tc.cmd, got, w)
			}
		}
		for _, n := range tc.not {
			if slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, n) }) {
				t.Errorf("%s: %q, want nothing with %q", tc.cmd, got, n)
			}
		}
	}

	// Banana unsubscribed: Fruit is listed for the deleted Peach alone.
	r.ok("u1 UNSUBSCRIBE Fruit/Banana")
	got := rawLines(r, `f LIST (SUBSCRIBED RECURSIVEMATCH) "" "Fruit"`)
	if !slices.Contains(got, `* LIST (\HasChildren) "/" Fruit (CHILDINFO ("SUBSCRIBED"))`) {
		t.Errorf("RECURSIVEMATCH Fruit: %q, want CHILDINFO for the deleted Fruit/Peach", got)
	}

	r.ok("u2 UNSUBSCRIBE Fruit/Peach")
	got = rawLines(r, `g LIST (SUBSCRIBED) "" "Fruit/*"`)
	if len(got) != 0 {
		t.Errorf("after UNSUBSCRIBE Fruit/Peach: %q, want no subscribed mailbox", got)
	}
}
