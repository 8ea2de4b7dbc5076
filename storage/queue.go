package storage

import (
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"
)

// enqueue writes the queue entry for a delivery's external recipients,
// inside the delivery's transaction, and returns its ID. trackingID links
// the entry to the sender's read-tracking record (0: none), so the
// relay's outcome can be reported there with setExternalState.
//
// TODO(issue 3): the outbound queue. Until it exists, smtpd refuses
// external recipients with 451 and this is never reached.
func enqueue(tx *bolt.Tx, d *Delivery, body *prepared, trackingID uint64, now time.Time, ev *eventList) (uint64, error) {
	return 0, errors.New("the outbound queue is not available yet")
}
