package protocol

import (
	"testing"

	"github.com/emersion/go-imap/v2"
)

// The APPENDUID of a MULTIAPPEND lists the UIDs in the order of the
// messages; a de-duplicated Sent copy keeps its older UID in its place.
func TestUIDListKeepsTheOrderOfTheMessages(t *testing.T) {
	for _, tc := range []struct {
		uids []imap.UID
		want string
	}{
		{[]imap.UID{7}, "7"},
		{[]imap.UID{4, 5, 6}, "4:6"},
		{[]imap.UID{4, 5, 2}, "4:5,2"},
		{[]imap.UID{9, 3, 10, 11}, "9,3,10:11"},
	} {
		if got := uidList(tc.uids); got != tc.want {
			t.Errorf("uidList(%v) = %q, want %q", tc.uids, got, tc.want)
		}
	}
}
