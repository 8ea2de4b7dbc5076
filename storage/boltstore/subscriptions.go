package boltstore

// Subscriptions are kept by name, apart from the mailboxes, in the user's
// "subs" bucket (<name> -> empty value). RFC 3501 6.3.6 and RFC 9051
// 6.3.7: the server must not remove a name from the subscription list
// because the mailbox is gone, and RFC 5258 3 lists such a name as
// (\Subscribed \NonExistent). So DELETE leaves the name subscribed, a
// mailbox created again under it is subscribed at once, and UNSUBSCRIBE
// removes a name whether or not its mailbox exists. RENAME moves the
// subscriptions of the renamed mailboxes with them, as the flag on the
// mailbox record did before.
//
// Databases from before the bucket carry the subscription as a flag of the
// mailbox record; Open copies the flags into the bucket once (a user
// without the bucket), and SetSubscribed keeps the flag of an existing
// mailbox in step, so a previous release still reads the subscriptions.

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

var bucketSubs = []byte("subs")

// keySubsMigrated in the meta bucket records that migrateSubscriptions has
// run, so later opens do not walk every user's mailboxes again (a walk
// that would also stop `pochta check` from opening a damaged database).
var keySubsMigrated = []byte("subs-migrated")

// isSubscribed reports whether name is on the user's subscription list. A
// user without the bucket (not possible after Open's migration, kept for
// safety) falls back to the mailbox record's flag.
func (u *userTx) isSubscribed(name string, rec *mailboxRecord) bool {
	subs := u.b.Bucket(bucketSubs)
	if subs == nil {
		return rec != nil && rec.Subscribed
	}
	return subs.Get([]byte(name)) != nil
}

// setSubscription adds name to or removes it from the subscription list
// (a write transaction). It reports whether the list changed.
func (u *userTx) setSubscription(name string, on bool) (bool, error) {
	subs, err := u.b.CreateBucketIfNotExists(bucketSubs)
	if err != nil {
		return false, err
	}
	was := subs.Get([]byte(name)) != nil
	if was == on {
		return false, nil
	}
	if on {
		return true, subs.Put([]byte(name), []byte{})
	}
	return true, subs.Delete([]byte(name))
}

// renameSubscription moves a subscription from one name to another.
func (u *userTx) renameSubscription(from, to string, rec *mailboxRecord) error {
	if !u.isSubscribed(from, rec) {
		return nil
	}
	if _, err := u.setSubscription(from, false); err != nil {
		return err
	}
	_, err := u.setSubscription(to, true)
	return err
}

// migrateSubscriptions gives every user without a "subs" bucket one, filled
// from the Subscribed flags of their mailbox records, once per database. A
// user created afterwards gets the bucket with its first subscription
// (createMailbox), so one without it has none.
func migrateSubscriptions(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta.Get(keySubsMigrated) != nil {
		return nil
	}
	if err := copySubscriptionFlags(tx); err != nil {
		return err
	}
	return meta.Put(keySubsMigrated, []byte{1})
}

func copySubscriptionFlags(tx *bolt.Tx) error {
	c := tx.Bucket(bucketUsers).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			continue
		}
		ub := tx.Bucket(bucketUsers).Bucket(k)
		if ub.Bucket(bucketSubs) != nil {
			continue
		}
		u, err := openUser(tx, string(k))
		if err != nil {
			return fmt.Errorf("subscriptions: %w", err)
		}
		subs, err := ub.CreateBucket(bucketSubs)
		if err != nil {
			return fmt.Errorf("subscriptions of %s: %w", k, err)
		}
		nc := u.names.Cursor()
		for name, id := nc.First(); name != nil; name, id = nc.Next() {
			x, err := u.box(beUint64(id))
			if err != nil {
				return fmt.Errorf("subscriptions: %w", err)
			}
			if x.rec.Subscribed {
				if err := subs.Put(name, []byte{}); err != nil {
					return fmt.Errorf("subscriptions of %s: %w", k, err)
				}
			}
		}
	}
	return nil
}

// Subscriptions returns the names on a user's subscription list, ordered,
// including names whose mailbox no longer exists.
func (s *boltStore) Subscriptions(ctx context.Context, user string) ([]string, error) {
	var names []string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		u, err := openUser(tx, user)
		if err != nil {
			return err
		}
		subs := u.b.Bucket(bucketSubs)
		if subs == nil {
			return nil // the flags Mailboxes reports are all there is
		}
		return subs.ForEach(func(k, _ []byte) error {
			names = append(names, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("storage: subscriptions: %w", err)
	}
	return names, nil
}
