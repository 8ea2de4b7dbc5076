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
