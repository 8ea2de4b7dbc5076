package storage

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// trackDelivery writes the read-tracking record of a submitted message
// inside the delivery's transaction and sets res.TrackingID.
//
// TODO(issue 4): read tracking ("not delivered"); nothing is tracked yet.
func trackDelivery(tx *bolt.Tx, d *Delivery, res *DeliveryResult, now time.Time, ev *eventList) error {
	return nil
}

// setExternalState records the relay's outcome for one external recipient
// of a tracked message (state "relayed" or "failed"), inside the queue's
// transaction. It is a no-op for trackingID 0.
//
// TODO(issue 4): implemented with read tracking.
func setExternalState(tx *bolt.Tx, trackingID uint64, recipient, state string, ev *eventList) error {
	return nil
}
