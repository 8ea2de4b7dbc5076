package boltstore

import (
	"errors"
	"testing"

	"github.com/pochta/pochta/storage"
)

func TestMailboxNamesCannotClimbOrHoldNoncharacters(t *testing.T) {
	for _, bad := range []string{"..", "../etc", "INBOX/../../x", "a/./b", "a/..", "x\uffffy", "\ufffe"} {
		if _, err := storage.NormalizeMailboxName(bad); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("NormalizeMailboxName(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	for _, good := range []string{"Archive/2026", "..hidden", "a.b/c..d", "Entwürfe", "inbox/Sub"} {
		if _, err := storage.NormalizeMailboxName(good); err != nil {
			t.Errorf("NormalizeMailboxName(%q) = %v, want a valid name", good, err)
		}
	}
}
