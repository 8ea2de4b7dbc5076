package storage

// The forms of addresses and mailbox names every backend stores.

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// NormalizeAddress lower-cases an address and checks that it is a plain
// local@domain without spaces, control characters or quoting; ErrInvalid
// otherwise. It is what the store applies to every address it is given.
func NormalizeAddress(address string) (string, error) {
	a := strings.ToLower(address)
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("address %q: %s: %w", address, why, ErrInvalid)
	}
	// RFC 5321 4.5.3.1.3: a path is at most 256 octets including the
	// angle brackets.
	if len(a) > 254 {
		return bad("too long")
	}
	if !utf8.ValidString(a) {
		return bad("not UTF-8")
	}
	local, domain, ok := strings.Cut(a, "@")
	if !ok || strings.Contains(domain, "@") {
		return bad("want local@domain")
	}
	// RFC 5321 4.5.3.1.1: local part at most 64 octets.
	if local == "" || len(local) > 64 {
		return bad("bad local part")
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return bad("bad dots in local part")
	}
	for _, r := range a {
		if r <= ' ' || r == 0x7f {
			return bad("space or control character")
		}
	}
	if strings.ContainsAny(local, "\"(),:;<>[\\]") {
		return bad("special character in local part")
	}
	if domain == "" || len(domain) > 253 {
		return bad("bad domain")
	}
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return bad("bad domain label")
		}
		for _, r := range label {
			if r < 0x80 && r != '-' && (r < 'a' || r > 'z') && (r < '0' || r > '9') {
				return bad("bad character in domain")
			}
		}
	}
	return a, nil
}

// maxMailboxName bounds a mailbox name in bytes (bolt keys may be 32 KiB;
// no client needs names anywhere near this).
const maxMailboxName = 1000

// NormalizeMailboxName checks a mailbox name and returns its stored form:
// a leading INBOX component is matched case-insensitively (RFC 3501 5.1,
// and children of INBOX follow it so "inbox/x" and "INBOX/x" are one
// mailbox). Empty components, control characters and the LIST wildcards
// "*" and "%" are ErrInvalid.
func NormalizeMailboxName(name string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("mailbox name %q: %s: %w", name, why, ErrInvalid)
	}
	if name == "" {
		return bad("empty")
	}
	if len(name) > maxMailboxName {
		return bad("too long")
	}
	if !utf8.ValidString(name) {
		return bad("not UTF-8")
	}
	if strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") || strings.Contains(name, "//") {
		return bad("empty hierarchy level")
	}
	for _, level := range strings.Split(name, "/") {
		// Not paths, but a client or a Maildir sync tool (mbsync) maps
		// names to directories: "." and ".." levels would climb out.
		if level == "." || level == ".." {
			return bad(`"." and ".." are not allowed as a hierarchy level`)
		}
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return bad("control character")
		}
		// Noncharacters: what a broken modified UTF-7 name decodes to.
		if r == 0xfffe || r == 0xffff {
			return bad("invalid character")
		}
		// RFC 3501 5.1: wildcards of LIST must not be in names.
		if r == '*' || r == '%' {
			return bad("wildcard character")
		}
	}
	first, rest, hasRest := strings.Cut(name, "/")
	if strings.EqualFold(first, Inbox) {
		if hasRest {
			return Inbox + "/" + rest, nil
		}
		return Inbox, nil
	}
	return name, nil
}

// RenameNames checks the names of a RENAME (RenameMailbox's promises) and
// returns them normalised: ErrProtected for INBOX, Sent, Drafts or Trash,
// ErrInvalid for a bad name or a move into the mailbox's own subtree.
func RenameNames(oldName, newName string) (from, to string, err error) {
	if from, err = NormalizeMailboxName(oldName); err != nil {
		return "", "", err
	}
	if to, err = NormalizeMailboxName(newName); err != nil {
		return "", "", err
	}
	if IsProtected(from) {
		return "", "", fmt.Errorf("mailbox %q: %w", from, ErrProtected)
	}
	if strings.HasPrefix(to, from+"/") {
		return "", "", fmt.Errorf("mailbox %q into itself: %w", from, ErrInvalid)
	}
	return from, to, nil
}
