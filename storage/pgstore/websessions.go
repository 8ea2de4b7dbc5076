package pgstore

// Web sign-in sessions and per-user web preferences. As in the bbolt
// backend, only a hash of a session's token is stored (a copy of the
// database lets nobody sign in), and a session is bound to the password
// hash it was made under: a password change or the user's deletion (ON
// DELETE CASCADE) ends every session of that user. Expired and dead
// sessions are swept when a new one is created.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/storage"
)

// maxWebToken bounds what is hashed from a cookie.
const maxWebToken = 128

func webTokenKey(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// CreateWebSession implements storage.WebStore.
func (s *pgStore) CreateWebSession(ctx context.Context, address string, ttl time.Duration) (string, *storage.WebSession, error) {
	addr := strings.ToLower(address)
	token, err := randomToken()
	if err != nil {
		return "", nil, fmt.Errorf("storage: web session: %w", err)
	}
	csrf, err := randomToken()
	if err != nil {
		return "", nil, fmt.Errorf("storage: web session: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	expires := now.Add(ttl).Truncate(time.Microsecond)
	var ws *storage.WebSession
	err = s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		var admin bool
		err := tx.QueryRow(ctx, `INSERT INTO web_sessions (token_sha256, username, csrf, created_at, expires_at, password_stamp)
			SELECT $1, address, $3, $4, $5, sha256(password_hash) FROM users WHERE address = $2
			RETURNING (SELECT admin FROM users WHERE address = $2)`, webTokenKey(token), addr, csrf, now, expires).Scan(&admin)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("user %s: %w", addr, storage.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM web_sessions w USING users u WHERE u.address = w.username
			AND (w.expires_at <= $1 OR w.password_stamp <> sha256(u.password_hash))`, now); err != nil {
			return err
		}
		ws = &storage.WebSession{Address: addr, Admin: admin, CSRFToken: csrf, Created: now, Expires: expires}
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("storage: web session for %s: %w", addr, err)
	}
	return token, ws, nil
}

// WebSession implements storage.WebStore.
func (s *pgStore) WebSession(ctx context.Context, token string) (*storage.WebSession, error) {
	if token == "" || len(token) > maxWebToken {
		return nil, fmt.Errorf("storage: web session: %w", storage.ErrNotFound)
	}
	var ws storage.WebSession
	err := s.view(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT w.username, u.admin, w.csrf, w.created_at, w.expires_at
			FROM web_sessions w JOIN users u ON u.address = w.username
			WHERE w.token_sha256 = $1 AND w.expires_at > $2 AND w.password_stamp = sha256(u.password_hash)`,
			webTokenKey(token), time.Now()).Scan(&ws.Address, &ws.Admin, &ws.CSRFToken, &ws.Created, &ws.Expires)
		if errors.Is(err, pgx.ErrNoRows) {
			return storage.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: web session: %w", err)
	}
	ws.Created, ws.Expires = ws.Created.UTC(), ws.Expires.UTC()
	return &ws, nil
}

// DeleteWebSession implements storage.WebStore.
func (s *pgStore) DeleteWebSession(ctx context.Context, token string) error {
	if token == "" || len(token) > maxWebToken {
		return nil
	}
	err := s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		_, err := tx.Exec(ctx, "DELETE FROM web_sessions WHERE token_sha256 = $1", webTokenKey(token))
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: end web session: %w", err)
	}
	return nil
}

// WebPrefs implements storage.WebStore.
func (s *pgStore) WebPrefs(ctx context.Context, address string) (storage.WebPrefs, error) {
	addr := strings.ToLower(address)
	var p storage.WebPrefs
	err := s.view(ctx, func(tx pgx.Tx) error {
		var b []byte
		err := tx.QueryRow(ctx, "SELECT web_prefs FROM users WHERE address = $1", addr).Scan(&b)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("user %s: %w", addr, storage.ErrNotFound)
		}
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &p)
	})
	if err != nil {
		return storage.WebPrefs{}, fmt.Errorf("storage: web preferences: %w", err)
	}
	return p, nil
}

// SetWebPrefs implements storage.WebStore.
func (s *pgStore) SetWebPrefs(ctx context.Context, address string, p storage.WebPrefs) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("storage: web preferences: %w", err)
	}
	addr := strings.ToLower(address)
	err = s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		return updateUser(ctx, tx, addr, "UPDATE users SET web_prefs = $2::jsonb WHERE address = $1", string(b))
	})
	if err != nil {
		return fmt.Errorf("storage: web preferences: %w", err)
	}
	return nil
}
