// Command genv1 wrote storage/testdata/v1.db, the database of the release
// with schema version 1 (before the change feed). It was run once, at commit
// 1421638 (main before MODSEQ), and is kept to show what the file holds:
//
//	go run ./storage/testdata/genv1 storage/testdata/v1.db
//
// Run with a later pochta it would write that version's format instead.
// (Both now live in storage/boltstore/testdata, with the bbolt backend.)
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
	"golang.org/x/crypto/bcrypt"
)

func msg(subject string) []byte {
	return []byte("From: alice@example.org\r\nTo: bob@example.org\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@example.org>\r\n\r\nbody of " + subject + "\r\n")
}

func main() {
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(path string) error {
	ctx := context.Background()
	s, err := storage.Open(path, storage.Options{PasswordCost: bcrypt.MinCost})
	if err != nil {
		return err
	}
	defer s.Close()
	for _, u := range []string{"alice@example.org", "bob@example.org"} {
		if err := s.CreateUser(ctx, u, "secret", u == "alice@example.org"); err != nil {
			return err
		}
	}
	date := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	for i := range 5 {
		if _, err := s.Append(ctx, "bob@example.org", storage.Inbox, &storage.NewMessage{
			Raw: msg(fmt.Sprintf("inbox-%d", i)), InternalDate: date.Add(time.Duration(i) * time.Hour),
		}); err != nil {
			return err
		}
	}
	if err := s.CreateMailbox(ctx, "bob@example.org", "Archive/2026"); err != nil {
		return err
	}
	for i := range 3 {
		if _, err := s.Append(ctx, "bob@example.org", "Archive/2026", &storage.NewMessage{
			Raw: msg(fmt.Sprintf("archive-%d", i)), InternalDate: date, Flags: []imap.Flag{imap.FlagSeen, "$Work"},
		}); err != nil {
			return err
		}
	}
	inbox, err := s.Mailbox(ctx, "bob@example.org", storage.Inbox)
	if err != nil {
		return err
	}
	// Flags on 2 and 3; 4 expunged, so UID 4 must never come back.
	if _, err := s.StoreFlags(ctx, "bob@example.org", inbox.ID, []imap.UID{2, 3}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen, imap.FlagFlagged}); err != nil {
		return err
	}
	if _, err := s.StoreFlags(ctx, "bob@example.org", inbox.ID, []imap.UID{4}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		return err
	}
	if _, err := s.Expunge(ctx, "bob@example.org", inbox.ID, nil); err != nil {
		return err
	}
	// A tracked delivery from alice to bob and to an external recipient: a
	// read-tracking record and a queue entry.
	if _, err := s.Deliver(ctx, &storage.Delivery{
		Sender: "alice@example.org", SentCopy: &storage.NewMessage{Raw: msg("tracked")},
		Recipients: []string{"bob@example.org"}, Copy: &storage.NewMessage{Raw: msg("tracked")},
		From: "alice@example.org", Source: storage.SourceUser,
		External: []string{"carol@remote.example"}, RelayCopy: &storage.NewMessage{Raw: msg("tracked")},
		MessageID: "<tracked@example.org>", Subject: "tracked",
	}); err != nil {
		return err
	}
	return nil
}
