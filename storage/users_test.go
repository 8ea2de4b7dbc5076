package storage

import (
	"errors"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// The dummy hash an unknown user is compared against costs what a real
// one does, or Authenticate would tell unknown users by their speed.
func TestRulesCompareUnknownUsersAtTheConfiguredCost(t *testing.T) {
	for _, cost := range []int{bcrypt.MinCost, bcrypt.MinCost + 2} {
		r, err := NewRules(nil, RulesOptions{PasswordCost: cost})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := bcrypt.Cost(r.passwords.dummy); err != nil || got != cost {
			t.Errorf("dummy hash cost %d (%v), want %d", got, err, cost)
		}
	}
	if _, err := NewRules(nil, RulesOptions{PasswordCost: bcrypt.MaxCost + 1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("cost above bcrypt's maximum: %v, want ErrInvalid", err)
	}
}
