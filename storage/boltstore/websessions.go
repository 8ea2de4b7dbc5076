package boltstore

// Web sign-in sessions and per-user web preferences.
//
// Layout:
//
//	"websessions"/<sha256(token)>   webSessionRecord (JSON)
//	"users"/<address>/"webprefs"    WebPrefs (JSON), removed with the user
//
// Only a hash of the session token is stored: a copy of the database (a
// backup) does not let anyone sign in. A session is bound to the password
// hash it was made under, so `user passwd` and `user del` end every session
// of that user without having to find them: a session whose user is gone or
// whose password has changed is not found. Expired and dead sessions are
// swept when a new one is created.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketWebSessions = []byte("websessions")
	keyWebPrefs       = []byte("webprefs")
)

type webSessionRecord struct {
	Address  string    `json:"address"`
	CSRF     string    `json:"csrf"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
	Password []byte    `json:"password"` // sha256 of the password hash it was made under
}

// maxWebToken bounds what is hashed from a cookie.
const maxWebToken = 128

func webTokenKey(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

func passwordStamp(hash []byte) []byte {
	sum := sha256.Sum256(hash)
	return sum[:]
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// liveSession checks a record against its user; it returns the user's
// record when the session is still valid.
func liveSession(tx *bolt.Tx, rec *webSessionRecord, now time.Time) (*userRecord, bool) {
	if !now.Before(rec.Expires) {
		return nil, false
	}
	u, err := openUser(tx, rec.Address)
	if err != nil {
		return nil, false
	}
	ur, err := u.record()
	if err != nil {
		return nil, false
	}
	if subtle.ConstantTimeCompare(passwordStamp(ur.PasswordHash), rec.Password) != 1 {
		return nil, false
	}
	return ur, true
}

// CreateWebSession implements WebStore.
func (s *boltStore) CreateWebSession(ctx context.Context, address string, ttl time.Duration) (string, *storage.WebSession, error) {
	addr := strings.ToLower(address)
	token, err := randomToken()
	if err != nil {
		return "", nil, fmt.Errorf("storage: web session: %w", err)
	}
	csrf, err := randomToken()
	if err != nil {
		return "", nil, fmt.Errorf("storage: web session: %w", err)
	}
	now := time.Now().UTC()
	key := webTokenKey(token)
	ws, err := write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (*storage.WebSession, error) {
		u, err := openUser(tx, addr)
		if err != nil {
			return nil, err
		}
		ur, err := u.record()
		if err != nil {
			return nil, err
		}
		b, err := tx.CreateBucketIfNotExists(bucketWebSessions)
		if err != nil {
			return nil, err
		}
		if err := sweepWebSessions(tx, b, now); err != nil {
			return nil, err
		}
		rec := webSessionRecord{Address: addr, CSRF: csrf, Created: now, Expires: now.Add(ttl), Password: passwordStamp(ur.PasswordHash)}
		v, err := json.Marshal(rec)
		if err != nil {
			return nil, err
		}
		if err := b.Put(key, v); err != nil {
			return nil, err
		}
		return &storage.WebSession{Address: addr, Admin: ur.Admin, CSRFToken: csrf, Created: rec.Created, Expires: rec.Expires}, nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("storage: web session for %s: %w", addr, err)
	}
	return token, ws, nil
}

// sweepWebSessions removes expired sessions and those whose user is gone
// or has a new password. Sessions are few (one per signed-in browser), so
// one pass at each sign-in is cheap.
func sweepWebSessions(tx *bolt.Tx, b *bolt.Bucket, now time.Time) error {
	var dead [][]byte
	err := b.ForEach(func(k, v []byte) error {
		var rec webSessionRecord
		if json.Unmarshal(v, &rec) != nil {
			dead = append(dead, bytes.Clone(k))
			return nil
		}
		if _, ok := liveSession(tx, &rec, now); !ok {
			dead = append(dead, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range dead {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// WebSession implements WebStore.
func (s *boltStore) WebSession(ctx context.Context, token string) (*storage.WebSession, error) {
	if token == "" || len(token) > maxWebToken {
		return nil, fmt.Errorf("storage: web session: %w", storage.ErrNotFound)
	}
	key := webTokenKey(token)
	now := time.Now()
	var ws *storage.WebSession
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketWebSessions)
		if b == nil {
			return storage.ErrNotFound
		}
		v := b.Get(key)
		if v == nil {
			return storage.ErrNotFound
		}
		var rec webSessionRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("%w: %v", errCorrupt, err)
		}
		ur, ok := liveSession(tx, &rec, now)
		if !ok {
			return storage.ErrNotFound
		}
		ws = &storage.WebSession{Address: rec.Address, Admin: ur.Admin, CSRFToken: rec.CSRF, Created: rec.Created, Expires: rec.Expires}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: web session: %w", err)
	}
	return ws, nil
}

// DeleteWebSession implements WebStore.
func (s *boltStore) DeleteWebSession(ctx context.Context, token string) error {
	if token == "" || len(token) > maxWebToken {
		return nil
	}
	key := webTokenKey(token)
	_, err := write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
		b := tx.Bucket(bucketWebSessions)
		if b == nil {
			return struct{}{}, nil
		}
		return struct{}{}, b.Delete(key)
	})
	if err != nil {
		return fmt.Errorf("storage: end web session: %w", err)
	}
	return nil
}

// WebPrefs implements WebStore.
func (s *boltStore) WebPrefs(ctx context.Context, address string) (storage.WebPrefs, error) {
	var p storage.WebPrefs
	err := s.view(ctx, func(tx *bolt.Tx) error {
		u, err := openUser(tx, address)
		if err != nil {
			return err
		}
		if v := u.b.Get(keyWebPrefs); v != nil {
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("web preferences: %w: %v", errCorrupt, err)
			}
		}
		return nil
	})
	if err != nil {
		return storage.WebPrefs{}, fmt.Errorf("storage: web preferences: %w", err)
	}
	return p, nil
}

// SetWebPrefs implements WebStore.
func (s *boltStore) SetWebPrefs(ctx context.Context, address string, p storage.WebPrefs) error {
	v, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("storage: web preferences: %w", err)
	}
	_, err = write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
		u, err := openUser(tx, address)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, u.b.Put(keyWebPrefs, v)
	})
	if err != nil {
		return fmt.Errorf("storage: web preferences: %w", err)
	}
	return nil
}
