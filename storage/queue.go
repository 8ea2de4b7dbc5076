package storage

import (
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"
)

// enqueue writes the queue entry for a delivery's external recipients,
// inside the delivery's transaction, and returns its ID.
//
// TODO(issue 3): the outbound queue. Until it exists, smtpd refuses
// external recipients with 451 and this is never reached.
func enqueue(tx *bolt.Tx, d *Delivery, body *prepared, now time.Time, ev *eventList) (uint64, error) {
	return 0, errors.New("the outbound queue is not available yet")
}
