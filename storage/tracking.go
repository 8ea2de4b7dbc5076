package storage

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// trackDelivery writes the read-tracking record of a submitted message
// inside the delivery's transaction.
//
// TODO(issue 4): read tracking ("not delivered"); nothing is tracked yet.
func trackDelivery(tx *bolt.Tx, d *Delivery, res *DeliveryResult, now time.Time, ev *eventList) error {
	return nil
}
