package storage

import (
	"context"
	"reflect"
	"testing"
)

type fakeExport struct {
	users    []*ExportedUser
	boxes    []*ExportedMailbox
	msgs     []*ExportedMessage
	tracking []*ExportedTracking
	queue    []*ExportedQueueEntry
}

func (f *fakeExport) Export(ctx context.Context, v ExportVisitor) error {
	for _, u := range f.users {
		if err := v.User(u); err != nil {
			return err
		}
		for _, b := range f.boxes {
			if b.User != u.Record.Address {
				continue
			}
			if err := v.Mailbox(b); err != nil {
				return err
			}
			for _, m := range f.msgs {
				if m.User == b.User && m.Mailbox == b.ID {
					if err := v.Message(m); err != nil {
						return err
					}
				}
			}
		}
	}
	for _, tr := range f.tracking {
		if err := v.VisitTracking(tr); err != nil {
			return err
		}
	}
	for _, e := range f.queue {
		if err := v.VisitQueueEntry(e); err != nil {
			return err
		}
	}
	return v.VisitQueueState(&ExportedQueueState{})
}

func TestCountExportAndMismatches(t *testing.T) {
	a, b := UserRecord{}, UserRecord{}
	a.Address, b.Address = "a@x", "b@x"
	src := &fakeExport{
		users: []*ExportedUser{{Record: a}, {Record: b}},
		boxes: []*ExportedMailbox{{User: "a@x", ID: 1, Name: "INBOX"}, {User: "b@x", ID: 1, Name: "INBOX"}, {User: "b@x", ID: 2, Name: "Old"}},
		msgs:  []*ExportedMessage{{User: "a@x", Mailbox: 1, UID: 1}, {User: "a@x", Mailbox: 1, UID: 2}, {User: "b@x", Mailbox: 2, UID: 7}},
		// SentStatus lists a record under its sender only: the one of a
		// sender who is no user is not counted.
		tracking: []*ExportedTracking{{ID: 1, Record: TrackingRecord{Sender: "a@x"}}, {ID: 2, Record: TrackingRecord{Sender: "gone@x"}}},
		queue: []*ExportedQueueEntry{{Entry: &QueueEntry{ID: 1, Status: QueueOutbox}}, {Entry: &QueueEntry{ID: 2, Status: QueueHeld}},
			{Entry: &QueueEntry{ID: 3, Status: QueueOutbox}}, {Entry: &QueueEntry{ID: 4, Status: QueueFailed}}},
	}
	c, err := CountExport(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	want := &Counts{Users: 2, Mailboxes: map[string]int{"a@x/INBOX": 2, "b@x/INBOX": 0, "b@x/Old": 1},
		Tracking: 1, Queue: QueueCounts{Outbox: 2, Held: 1, Failed: 1}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("counts = %+v, want %+v", c, want)
	}
	if m := c.Mismatches(want); len(m) != 0 {
		t.Fatalf("equal counts mismatch: %q", m)
	}
	dst := &Counts{Users: 1, Mailboxes: map[string]int{"a@x/INBOX": 1, "b@x/INBOX": 0, "c@x/INBOX": 0},
		Tracking: 0, Queue: QueueCounts{Outbox: 2, Held: 0, Sent: 1, Failed: 1}}
	got := c.Mismatches(dst)
	wantM := []string{
		"mailbox a@x/INBOX: 2 messages in the source, 1 in the destination",
		"mailbox b@x/Old: missing from the destination",
		"mailbox c@x/INBOX: only in the destination",
		"queue: 0 sent entries in the source, 1 in the destination",
		"queue: 1 held entries in the source, 0 in the destination",
		"read tracking: 1 sent messages in the source, 0 in the destination",
		"users: 2 in the source, 1 in the destination",
	}
	if !reflect.DeepEqual(got, wantM) {
		t.Fatalf("mismatches = %q, want %q", got, wantM)
	}

}
