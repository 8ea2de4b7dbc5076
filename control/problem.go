package control

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pochta/pochta/storage"
)

// Problem is an error a person reads as one sentence ("user
// bob@example.com already exists"). Err keeps the internal chain, for the
// debug log and for errors.Is on the storage kinds; Error returns only the
// sentence, so no layer's prefix reaches the terminal.
type Problem struct {
	Sentence string
	Err      error
}

func (p *Problem) Error() string { return p.Sentence }
func (p *Problem) Unwrap() error { return p.Err }

// Detail is the full internal chain behind the sentence.
func (p *Problem) Detail() string {
	if p.Err == nil {
		return ""
	}
	return p.Err.Error()
}

// Sentence returns what a person should read for err: the sentence of the
// first Problem in its chain, or of a damaged database
// (storage.DamagedError), or else err's own text.
func Sentence(err error) string {
	var p *Problem
	if errors.As(err, &p) {
		return p.Sentence
	}
	var d *storage.DamagedError
	if errors.As(err, &d) {
		return d.Sentence
	}
	return err.Error()
}

// MinPasswordLength is the shortest password AddUser and SetPassword accept.
const MinPasswordLength = 8

// CheckPassword is the one password rule, applied by AddUser and
// SetPassword whichever way they are reached (the control socket or the
// database directly): at least MinPasswordLength characters that are not
// spaces (eight spaces are no password; spaces inside one are fine), and
// neither the address nor its local part (compared without case).
func CheckPassword(address, password string) error {
	if n := len([]rune(password)); n < MinPasswordLength {
		return &Problem{
			Sentence: fmt.Sprintf("the password is too short: it needs at least %d characters (this one has %d)", MinPasswordLength, n),
			Err:      storage.ErrInvalid,
		}
	}
	if n := len([]rune(strings.Join(strings.Fields(password), ""))); n < MinPasswordLength {
		return &Problem{
			Sentence: fmt.Sprintf("the password is too short: it needs at least %d characters other than spaces (this one has %d)", MinPasswordLength, n),
			Err:      storage.ErrInvalid,
		}
	}
	local, _, _ := strings.Cut(address, "@")
	if strings.EqualFold(password, address) || strings.EqualFold(password, local) {
		return &Problem{
			Sentence: "the password must not be the address or its part before the @",
			Err:      storage.ErrInvalid,
		}
	}
	return nil
}

// userProblem words a storage error about one user as one sentence.
func userProblem(action, address string, err error) error {
	addr := strings.ToLower(address)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return &Problem{fmt.Sprintf("user %s does not exist", addr), err}
	case errors.Is(err, storage.ErrExists):
		return &Problem{fmt.Sprintf("user %s already exists", addr), err}
	}
	return &Problem{fmt.Sprintf("cannot %s %s: %s", action, addr, rootCause(err)), err}
}

// queueProblem words a storage error about one queue entry.
func queueProblem(action string, id uint64, err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return &Problem{fmt.Sprintf("there is no queue entry %d", id), err}
	}
	return &Problem{fmt.Sprintf("cannot %s queue entry %d: %s", action, id, rootCause(err)), err}
}

// rootCause is what went wrong without the layers that passed it on: the
// innermost error's text, or, when that is only a storage kind ("invalid
// value"), the text of the error that named it, without the kind.
func rootCause(err error) string {
	var parent error
	for {
		next := errors.Unwrap(err)
		if next == nil {
			break
		}
		parent, err = err, next
	}
	for _, kind := range errorKinds {
		if err == kind && parent != nil {
			return strings.TrimSuffix(parent.Error(), ": "+kind.Error())
		}
	}
	return err.Error()
}
