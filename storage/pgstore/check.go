package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
)

// badMessage is one message row Check could not make sense of.
type badMessage struct {
	user, mailbox string
	box, uid      int64
	reason        string
}

// Check implements storage.Backend: it reads every user, mailbox and
// message row (the rows stream; one message's bytes at a time) and
// reports those whose encoded parts (settings, the parsed record, flags,
// size) do not decode or agree. With repair, in the same transaction,
// each bad message moves to the quarantine table (nothing serves it) and
// leaves its mailbox as an expunge does.
func (s *pgStore) Check(ctx context.Context, repair bool) (*storage.CheckReport, error) {
	rep := &storage.CheckReport{Bad: []storage.BadRecord{}}
	run := func(tx pgx.Tx, ev *storage.Events) error {
		*rep = storage.CheckReport{Bad: []storage.BadRecord{}}
		rows, err := tx.Query(ctx, "SELECT address, settings FROM users ORDER BY address")
		if err != nil {
			return err
		}
		for rows.Next() {
			var addr string
			var settings []byte
			if err := rows.Scan(&addr, &settings); err != nil {
				rows.Close()
				return err
			}
			rep.Checked++
			var st storage.Settings
			if err := json.Unmarshal(settings, &st); err != nil {
				rep.Bad = append(rep.Bad, storage.BadRecord{User: addr, Error: "user record: " + err.Error()})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var boxes int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM mailboxes").Scan(&boxes); err != nil {
			return err
		}
		rep.Checked += boxes
		rows, err = tx.Query(ctx, `SELECT x.username, x.name, m.mailbox_id, m.uid, m.flags, m.parsed,
				m.size, length(m.own) + coalesce(length(b.content), 0), (m.shared_body_id IS NOT NULL AND b.id IS NULL)
			FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id
			LEFT JOIN bodies b ON b.id = m.shared_body_id
			ORDER BY x.username, m.mailbox_id, m.uid`)
		if err != nil {
			return err
		}
		var bad []badMessage
		for rows.Next() {
			var b badMessage
			var flags []string
			var parsed []byte
			var size, stored int64
			var lost bool
			if err := rows.Scan(&b.user, &b.mailbox, &b.box, &b.uid, &flags, &parsed, &size, &stored, &lost); err != nil {
				rows.Close()
				return err
			}
			rep.Checked++
			fl := make([]imap.Flag, len(flags))
			for i, f := range flags {
				fl[i] = imap.Flag(f)
			}
			switch canon, ferr := boltstore.CanonicalFlags(fl); {
			case lost:
				b.reason = "its shared body is missing"
			case ferr != nil:
				b.reason = "flags: " + ferr.Error()
			case !slices.Equal(canon, fl):
				b.reason = fmt.Sprintf("flags %q not in canonical form", flags)
			case size != stored:
				b.reason = fmt.Sprintf("size %d, but %d bytes stored", size, stored)
			default:
				if _, _, err := boltstore.DecodeParsed(parsed, true, true); err != nil {
					b.reason = "parsed record: " + err.Error()
				}
			}
			if b.reason != "" {
				bad = append(bad, b)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		t := pgTx{ctx: ctx, tx: tx, ro: !repair}
		for _, b := range bad {
			r := storage.BadRecord{User: b.user, Mailbox: b.mailbox, UID: uint32(b.uid), Error: b.reason}
			if repair {
				if err := quarantine(t, b, ev); err != nil {
					return fmt.Errorf("quarantine message %d of %s %q: %w", b.uid, b.user, b.mailbox, err)
				}
				r.Quarantined = true
			}
			rep.Bad = append(rep.Bad, r)
		}
		return nil
	}
	var err error
	if repair {
		err = s.write(ctx, run)
	} else {
		err = s.view(ctx, func(tx pgx.Tx) error { return run(tx, nil) })
	}
	if err != nil {
		return nil, fmt.Errorf("storage: check: %w", err)
	}
	return rep, nil
}

// quarantine copies a bad message's row into the quarantine and removes
// it from its mailbox (a tombstone, the counters, the rules' hook).
func quarantine(t pgTx, b badMessage, ev *storage.Events) error {
	if _, err := t.tx.Exec(t.ctx, `INSERT INTO quarantine (username, mailbox, mailbox_id, uid, error, parsed, body)
		SELECT $1, $2, m.mailbox_id, m.uid, $5, m.parsed, m.own || coalesce(bd.content, ''::bytea)
		FROM messages m LEFT JOIN bodies bd ON bd.id = m.shared_body_id
		WHERE m.mailbox_id = $3 AND m.uid = $4`, b.user, b.mailbox, b.box, b.uid, b.reason); err != nil {
		return err
	}
	x, err := t.openMailbox(b.user, uint64(b.box))
	if err != nil {
		return err
	}
	r, ok, err := x.row(imap.UID(b.uid))
	if err != nil || !ok {
		return err
	}
	return x.remove(imap.UID(b.uid), r, ev)
}
