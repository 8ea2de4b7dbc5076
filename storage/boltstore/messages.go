package boltstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/textproto"
	bolt "go.etcd.io/bbolt"

	"github.com/pochta/pochta/imapd/envelope"
	"github.com/pochta/pochta/message"
	"github.com/pochta/pochta/storage"
)

const (
	// maxKeywords and maxKeywordLen bound what one message's flags may
	// hold, so a client cannot grow a metadata record without limit.
	maxKeywords   = 64
	maxKeywordLen = 256
	// maxMessageSize: bolt's value limit, and IMAP sizes are 32-bit.
	maxMessageSize = bolt.MaxValueSize
	// appendFillPercent: UIDs only grow, so pages are filled at the right
	// edge and never receive inserts in the middle; packing them nearly
	// full halves the space of the default 50 %.
	appendFillPercent = 0.9
)

// parseFlags canonicalises flags given by a client: system flags are
// matched case-insensitively and spelled as in RFC 9051 2.3.2, \Recent is
// dropped (it is never stored: RFC 9051 removed it and go-imap derives it),
// keywords are deduplicated case-insensitively and must be atoms.
func parseFlags(flags []imap.Flag) (flagSet, error) {
	var f flagSet
	for _, fl := range flags {
		s := string(fl)
		if strings.HasPrefix(s, `\`) {
			if strings.EqualFold(s, `\Recent`) {
				continue
			}
			found := false
			for _, sf := range systemFlags {
				if strings.EqualFold(s, string(sf.flag)) {
					f.sys |= sf.bit
					found = true
					break
				}
			}
			if !found {
				return flagSet{}, fmt.Errorf("flag %q: %w", s, storage.ErrInvalid)
			}
			continue
		}
		if err := checkKeyword(s); err != nil {
			return flagSet{}, err
		}
		f.keywords = addKeyword(f.keywords, s)
	}
	if len(f.keywords) > maxKeywords {
		return flagSet{}, fmt.Errorf("more than %d keywords: %w", maxKeywords, storage.ErrInvalid)
	}
	return f, nil
}

// checkKeyword accepts an RFC 3501 atom.
func checkKeyword(s string) error {
	if s == "" || len(s) > maxKeywordLen {
		return fmt.Errorf("keyword %q: bad length: %w", s, storage.ErrInvalid)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return fmt.Errorf("keyword %q: not an atom: %w", s, storage.ErrInvalid)
		}
	}
	return nil
}

func keywordIndex(l []string, k string) int {
	return slices.IndexFunc(l, func(x string) bool { return strings.EqualFold(x, k) })
}

// addKeyword inserts k keeping l sorted by lower-case form, without
// duplicates.
func addKeyword(l []string, k string) []string {
	if keywordIndex(l, k) >= 0 {
		return l
	}
	lk := strings.ToLower(k)
	i, _ := slices.BinarySearchFunc(l, lk, func(x, t string) int { return strings.Compare(strings.ToLower(x), t) })
	return slices.Insert(l, i, k)
}

// applyFlags returns cur changed by op with arg.
func applyFlags(cur flagSet, op imap.StoreFlagsOp, arg flagSet) (flagSet, error) {
	var out flagSet
	switch op {
	case imap.StoreFlagsSet:
		out = flagSet{sys: arg.sys, keywords: slices.Clone(arg.keywords)}
	case imap.StoreFlagsAdd:
		out = flagSet{sys: cur.sys | arg.sys, keywords: slices.Clone(cur.keywords)}
		for _, k := range arg.keywords {
			out.keywords = addKeyword(out.keywords, k)
		}
	case imap.StoreFlagsDel:
		out = flagSet{sys: cur.sys &^ arg.sys}
		for _, k := range cur.keywords {
			if keywordIndex(arg.keywords, k) < 0 {
				out.keywords = append(out.keywords, k)
			}
		}
	default:
		return flagSet{}, fmt.Errorf("flag operation %d: %w", op, storage.ErrInvalid)
	}
	if len(out.keywords) > maxKeywords {
		return flagSet{}, fmt.Errorf("more than %d keywords: %w", maxKeywords, storage.ErrInvalid)
	}
	return out, nil
}

// prepared is a message ready for the writer: parsed and encoded, so the
// transaction only copies bytes.
type prepared struct {
	raw    []byte
	flags  flagSet
	meta   []byte
	parsed []byte
	// own and shared are set by shareBody: the copy's own header and the
	// body it shares with the other copies of its delivery (bodies.go).
	own    []byte
	shared *sharedBody
}

// prepare validates and parses a message outside any transaction.
func prepare(m *storage.NewMessage, now time.Time) (*prepared, error) {
	if m == nil {
		return nil, fmt.Errorf("no message: %w", storage.ErrInvalid)
	}
	if len(m.Raw) > maxMessageSize || int64(len(m.Raw)) > math.MaxUint32 {
		return nil, fmt.Errorf("message of %d bytes: too large: %w", len(m.Raw), storage.ErrInvalid)
	}
	flags, err := parseFlags(m.Flags)
	if err != nil {
		return nil, err
	}
	date := m.InternalDate
	if date.IsZero() {
		date = now
	}
	env, bs := m.Envelope, m.BodyStructure
	if env == nil || bs == nil {
		// The one intake check of the MIME structure, before any parser
		// walks it: a parser reading nested parts costs time with their
		// depth, and the record of a deeper one could not be encoded.
		if bs == nil {
			if err := message.CheckStructure(m.Raw); err != nil {
				return nil, fmt.Errorf("%w: %w", err, storage.ErrInvalid)
			}
		}
		penv, pbs := parseMessage(m.Raw, bs == nil)
		if env == nil {
			env = penv
		}
		if bs == nil {
			bs = pbs
		}
	}
	parsed, err := encodeParsed(env, bs)
	if err != nil {
		return nil, err
	}
	meta := metaRecord{flags: flags, size: int64(len(m.Raw)), internalDate: date}
	return &prepared{raw: m.Raw, flags: flags, meta: meta.encode(), parsed: parsed}, nil
}

// parseMessage computes envelope and body structure once, at delivery, so
// FETCH never parses MIME. A message go-message cannot make sense of is
// still stored, described as one text/plain part.
//
// Without wantBS only the header is read.
func parseMessage(raw []byte, wantBS bool) (env *envelope.Envelope, bs imap.BodyStructure) {
	defer func() {
		if recover() != nil {
			if env == nil {
				env = &envelope.Envelope{}
			}
			bs = &imap.BodyStructureSinglePart{
				Type:    "text",
				Subtype: "plain",
				Size:    uint32(len(raw)),
				Text:    &imap.BodyStructureText{NumLines: int64(bytes.Count(raw, []byte("\n")))},
			}
		}
	}()
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	env = envelope.FromHeader(h)
	if wantBS {
		bs = extractBodyStructure(raw)
	}
	return env, bs
}

// msgBuckets are a mailbox's three message buckets.
type msgBuckets struct {
	meta, parsed, body *bolt.Bucket
}

func (x *boxTx) buckets() (msgBuckets, error) {
	mb := msgBuckets{
		meta:   x.b.Bucket(bucketMsgMeta),
		parsed: x.b.Bucket(bucketParsed),
		body:   x.b.Bucket(bucketBody),
	}
	if mb.meta == nil || mb.parsed == nil || mb.body == nil {
		return mb, fmt.Errorf("mailbox %d: %w", x.id, errCorrupt)
	}
	mb.meta.FillPercent = appendFillPercent
	mb.parsed.FillPercent = appendFillPercent
	mb.body.FillPercent = appendFillPercent
	return mb, nil
}

// put stores one message under the next UID and updates the counters in
// x.rec (the caller saves x once at the end of its request).
func (x *boxTx) put(metaRec, parsed []byte, body bodyForm, flags flagSet, size int64, ev *eventList) (imap.UID, error) {
	uid := x.rec.UIDNext
	if uid == 0 || uid == math.MaxUint32 {
		return 0, fmt.Errorf("mailbox %q: UIDs exhausted: %w", x.rec.Name, storage.ErrInvalid)
	}
	mb, err := x.buckets()
	if err != nil {
		return 0, err
	}
	modseq := x.bump()
	metaRec, err = withModSeq(metaRec, modseq)
	if err != nil {
		return 0, fmt.Errorf("message record: %w", err)
	}
	key := be32(uid)
	if err := mb.meta.Put(key, metaRec); err != nil {
		return 0, err
	}
	if err := x.recordChange(imap.UID(uid), 0, modseq); err != nil {
		return 0, err
	}
	if err := mb.parsed.Put(key, parsed); err != nil {
		return 0, err
	}
	if err := x.putBody(mb, key, body); err != nil {
		return 0, err
	}
	if err := x.indexNew(imap.UID(uid), metaRec, parsed, flags); err != nil {
		return 0, err
	}
	x.rec.UIDNext++
	x.rec.Messages++
	x.rec.Size += size
	if flags.sys&flagSeen == 0 {
		x.rec.Unseen++
	}
	ev.Add(storage.Event{Kind: storage.EventAppend, User: x.u.addr, MailboxID: x.id, UID: imap.UID(uid), Flags: flags.list(), ModSeq: modseq})
	return imap.UID(uid), nil
}

func (x *boxTx) appendPrepared(p *prepared, ev *eventList) (*storage.Appended, error) {
	uid, err := x.put(p.meta, p.parsed, p.form(), p.flags, int64(len(p.raw)), ev)
	if err != nil {
		return nil, err
	}
	return &storage.Appended{MailboxID: x.id, UIDValidity: x.rec.UIDValidity, UID: uid}, nil
}

// remove deletes one message and updates the counters.
func (x *boxTx) remove(mb msgBuckets, uid imap.UID, m metaRecord, ev *eventList) error {
	if err := x.unindex(mb, uid, m, ev); err != nil {
		return err
	}
	modseq, err := x.recordExpunge(uid, m.modseq)
	if err != nil {
		return err
	}
	key := be32(uint32(uid))
	for _, b := range []*bolt.Bucket{mb.meta, mb.parsed, mb.body} {
		if err := b.Delete(key); err != nil {
			return err
		}
	}
	if err := x.releaseBody(key); err != nil {
		return err
	}
	x.rec.Messages--
	x.rec.Size -= m.size
	if m.flags.sys&flagSeen == 0 {
		x.rec.Unseen--
	}
	ev.Add(storage.Event{Kind: storage.EventExpunge, User: x.u.addr, MailboxID: x.id, UID: uid, ModSeq: modseq})
	return nil
}

// Append stores one message in a mailbox.
func (s *boltStore) Append(ctx context.Context, user, mailbox string, msg *storage.NewMessage) (*storage.Appended, error) {
	name, err := storage.NormalizeMailboxName(mailbox)
	if err != nil {
		return nil, fmt.Errorf("storage: append: %w", err)
	}
	now := time.Now()
	p, err := prepare(msg, now)
	if err != nil {
		return nil, fmt.Errorf("storage: append: %w", err)
	}
	mid := p.messageID()
	a, err := write(s, ctx, len(p.raw), func(tx *bolt.Tx, ev *eventList) (*storage.Appended, error) {
		u, err := openUser(tx, user)
		if err != nil {
			return nil, err
		}
		x, err := u.boxByName(name)
		if err != nil {
			return nil, err
		}
		if dup, err := x.sentDuplicate(mid, now); err != nil {
			return nil, err
		} else if dup != nil {
			// The client's copy of a message the server already keeps
			// in Sent (storage/tracking_index.go).
			return dup, nil
		}
		if err := s.checkQuota(u, int64(len(p.raw))); err != nil {
			return nil, err
		}
		a, err := x.appendPrepared(p, ev)
		if err != nil {
			return nil, err
		}
		return a, x.save()
	})
	if err != nil {
		return nil, fmt.Errorf("storage: append: %w", err)
	}
	return a, nil
}

// Deliver stores the Sent copy and every INBOX copy in one transaction.
func (s *boltStore) Deliver(ctx context.Context, d *storage.Delivery) (*storage.DeliveryResult, error) {
	if d == nil || (d.Sender == "" && len(d.Recipients) == 0 && len(d.External) == 0) {
		return nil, fmt.Errorf("storage: deliver: nothing to deliver: %w", storage.ErrInvalid)
	}
	now := time.Now()
	shared := *d
	d = &shared
	shareBodyStructure(d)
	var sentCopy, inboxCopy *prepared
	var err error
	if d.Sender != "" {
		if sentCopy, err = prepare(d.SentCopy, now); err != nil {
			return nil, fmt.Errorf("storage: deliver: sent copy: %w", err)
		}
		if storage.TracksDelivery(d) {
			// Unread until every recipient has read it (storage/tracking.go).
			sentCopy.withoutSeen()
		}
	}
	var relayCopy *prepared
	if len(d.External) > 0 {
		if d.RelayCopy == nil {
			return nil, fmt.Errorf("storage: deliver: external recipients without a relay copy: %w", storage.ErrInvalid)
		}
		if relayCopy, err = prepare(d.RelayCopy, now); err != nil {
			return nil, fmt.Errorf("storage: deliver: relay copy: %w", err)
		}
	}
	var rcpts []string
	if len(d.Recipients) > 0 {
		if inboxCopy, err = prepare(d.Copy, now); err != nil {
			return nil, fmt.Errorf("storage: deliver: copy: %w", err)
		}
		for _, r := range d.Recipients {
			r = strings.ToLower(r)
			if !slices.Contains(rcpts, r) {
				rcpts = append(rcpts, r)
			}
		}
	}
	body := shareBody(sentCopy, inboxCopy, relayCopy)
	size := deliveryBytes(body, sentCopy, relayCopy, inboxCopy, len(rcpts))
	sender := strings.ToLower(d.Sender)
	res, err := write(s, ctx, size, func(tx *bolt.Tx, ev *eventList) (*storage.DeliveryResult, error) {
		res := &storage.DeliveryResult{Copies: make(map[string]*storage.Appended, len(rcpts))}
		if err := body.store(tx); err != nil {
			return nil, fmt.Errorf("shared body: %w", err)
		}
		if sender != "" {
			u, err := openUser(tx, sender)
			if err != nil {
				return nil, fmt.Errorf("sender: %w", err)
			}
			x, err := u.boxByName(storage.Sent)
			if err != nil {
				return nil, err
			}
			if res.Sent, err = x.appendPrepared(sentCopy, ev); err != nil {
				return nil, err
			}
			if err := x.save(); err != nil {
				return nil, err
			}
		}
		for _, r := range rcpts {
			u, err := openUser(tx, r)
			if err != nil {
				return nil, fmt.Errorf("recipient %s: %w", r, err)
			}
			x, err := u.boxByName(storage.Inbox)
			if err != nil {
				return nil, err
			}
			if res.Copies[r], err = x.appendPrepared(inboxCopy, ev); err != nil {
				return nil, err
			}
			if err := x.save(); err != nil {
				return nil, err
			}
		}
		if err := storage.TrackDelivery(records(tx), d, res, now, ev); err != nil {
			return nil, fmt.Errorf("read tracking: %w", err)
		}
		if relayCopy != nil {
			if res.QueueID, err = enqueue(tx, d, relayCopy, res.TrackingID, now, ev); err != nil {
				return nil, fmt.Errorf("queue: %w", err)
			}
		}
		return res, nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: deliver: %w", err)
	}
	return res, nil
}

// shareBodyStructure parses the body structure of a delivery's message once
// for all its copies: they differ in their header only, and the body
// structure describes the body (RFC 3501 7.4.2 sizes and lines exclude the
// header). A copy without a body structure of its own is replaced by a
// shallow copy carrying the shared one.
func shareBodyStructure(d *storage.Delivery) {
	copies := []**storage.NewMessage{&d.SentCopy, &d.Copy, &d.RelayCopy}
	var shared imap.BodyStructure
	for _, c := range copies {
		m := *c
		if m == nil || m.BodyStructure != nil {
			continue
		}
		if shared == nil {
			if message.CheckStructure(m.Raw) != nil {
				// prepare refuses it with the reason.
				return
			}
			_, shared = parseMessage(m.Raw, true)
		}
		withBS := *m
		withBS.BodyStructure = shared
		*c = &withBS
	}
}

// openBox finds a user's mailbox by ID inside a transaction.
func openBox(tx *bolt.Tx, user string, id uint64) (*boxTx, error) {
	u, err := openUser(tx, user)
	if err != nil {
		return nil, err
	}
	return u.box(id)
}

// UIDs returns a mailbox's UIDs ascending (the key order of "meta").
func (s *boltStore) UIDs(ctx context.Context, user string, mailboxID uint64) ([]imap.UID, error) {
	var uids []imap.UID
	err := s.view(ctx, func(tx *bolt.Tx) error {
		x, err := openBox(tx, user, mailboxID)
		if err != nil {
			return err
		}
		mb, err := x.buckets()
		if err != nil {
			return err
		}
		uids = make([]imap.UID, 0, x.rec.Messages)
		c := mb.meta.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) != 4 {
				return fmt.Errorf("mailbox %d: key %x: %w", mailboxID, k, errCorrupt)
			}
			uids = append(uids, imap.UID(binary.BigEndian.Uint32(k)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: uids: %w", err)
	}
	return uids, nil
}

// UIDsBefore returns up to limit UIDs of a mailbox below before (0: from
// the newest), descending: one page of a newest-first listing, read from
// the index without touching the rest of the mailbox.
func (s *boltStore) UIDsBefore(ctx context.Context, user string, mailboxID uint64, before imap.UID, limit int) ([]imap.UID, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("storage: uids before: limit %d: %w", limit, storage.ErrInvalid)
	}
	var uids []imap.UID
	err := s.view(ctx, func(tx *bolt.Tx) error {
		x, err := openBox(tx, user, mailboxID)
		if err != nil {
			return err
		}
		mb, err := x.buckets()
		if err != nil {
			return err
		}
		uids = make([]imap.UID, 0, min(limit, int(x.rec.Messages)))
		c := mb.meta.Cursor()
		var k []byte
		if before == 0 {
			k, _ = c.Last()
		} else {
			var key [4]byte
			binary.BigEndian.PutUint32(key[:], uint32(before))
			if k, _ = c.Seek(key[:]); k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
		}
		for ; k != nil && len(uids) < limit; k, _ = c.Prev() {
			if len(k) != 4 {
				return fmt.Errorf("mailbox %d: key %x: %w", mailboxID, k, errCorrupt)
			}
			uids = append(uids, imap.UID(binary.BigEndian.Uint32(k)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: uids before: %w", err)
	}
	return uids, nil
}

// Messages loads the messages of uids that exist, in the order of uids.
// Everything returned is copied out of the database.
func (s *boltStore) Messages(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, opts storage.LoadOptions) ([]*storage.Message, error) {
	msgs := make([]*storage.Message, 0, len(uids))
	err := s.view(ctx, func(tx *bolt.Tx) error {
		x, err := openBox(tx, user, mailboxID)
		if err != nil {
			return err
		}
		mb, err := x.buckets()
		if err != nil {
			return err
		}
		var key [4]byte
		for i, uid := range uids {
			if i%256 == 255 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			binary.BigEndian.PutUint32(key[:], uint32(uid))
			v := mb.meta.Get(key[:])
			if v == nil {
				continue
			}
			m, err := decodeMeta(v)
			if err != nil {
				return fmt.Errorf("message %d: %w", uid, err)
			}
			msg := &storage.Message{
				UID:          uid,
				Flags:        m.flags.list(),
				InternalDate: m.internalDate,
				Size:         m.size,
				ModSeq:       m.modseq,
			}
			if opts.Envelope || opts.BodyStructure {
				p := mb.parsed.Get(key[:])
				if msg.Envelope, msg.BodyStructure, err = decodeParsed(p, opts.Envelope, opts.BodyStructure); err != nil {
					return fmt.Errorf("message %d: %w", uid, err)
				}
			}
			if opts.Body || opts.Header {
				b, err := x.stored(mb, key[:])
				if err != nil {
					return fmt.Errorf("message %d: %w", uid, err)
				}
				switch {
				case opts.Body && opts.BodyMax > 0 && b.size() > opts.BodyMax:
					if opts.Header {
						msg.Header = bytes.Clone(b.header())
					}
				case opts.Body:
					msg.Body = b.bytes()
					if opts.Header {
						n := headerLen(msg.Body)
						msg.Header = msg.Body[:n:n]
					}
				default:
					msg.Header = bytes.Clone(b.header())
				}
			}
			msgs = append(msgs, msg)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: messages: %w", err)
	}
	return msgs, nil
}

// headerLen is the length of raw's header with the empty line that ends
// it: where textproto.ReadHeader stops reading, lines ending in LF or CRLF.
func headerLen(raw []byte) int {
	switch {
	case bytes.HasPrefix(raw, []byte("\n")):
		return 1
	case bytes.HasPrefix(raw, []byte("\r\n")):
		return 2
	}
	n := len(raw)
	if i := bytes.Index(raw, []byte("\n\r\n")); i >= 0 {
		n = i + 3
	}
	if i := bytes.Index(raw[:n], []byte("\n\n")); i >= 0 {
		n = i + 2
	}
	return n
}

// sortedUIDs returns uids ascending without duplicates or zeros, so that
// results and events come out in UID order whatever order the caller used.
func sortedUIDs(uids []imap.UID) []imap.UID {
	out := slices.Clone(uids)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > 0 && out[0] == 0 {
		out = out[1:]
	}
	return out
}

// StoreFlags changes the flags of the messages of uids that exist.
func (s *boltStore) StoreFlags(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, op imap.StoreFlagsOp, flags []imap.Flag) ([]storage.FlagUpdate, error) {
	updates, _, err := s.storeFlags(ctx, user, mailboxID, uids, op, flags, 0, false)
	return updates, err
}

// StoreFlagsUnchangedSince changes the flags of the messages of uids whose
// modseq is at most unchangedSince and returns the others as modified.
func (s *boltStore) StoreFlagsUnchangedSince(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, op imap.StoreFlagsOp, flags []imap.Flag, unchangedSince uint64) ([]storage.FlagUpdate, []imap.UID, error) {
	return s.storeFlags(ctx, user, mailboxID, uids, op, flags, unchangedSince, true)
}

type storeResult struct {
	updates  []storage.FlagUpdate
	modified []imap.UID
}

func (s *boltStore) storeFlags(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, op imap.StoreFlagsOp, flags []imap.Flag,
	unchangedSince uint64, conditional bool) ([]storage.FlagUpdate, []imap.UID, error) {
	arg, err := parseFlags(flags)
	if err != nil {
		return nil, nil, fmt.Errorf("storage: store flags: %w", err)
	}
	if _, err := applyFlags(flagSet{}, op, arg); err != nil {
		return nil, nil, fmt.Errorf("storage: store flags: %w", err)
	}
	sorted := sortedUIDs(uids)
	res, err := write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (storeResult, error) {
		x, err := openBox(tx, user, mailboxID)
		if err != nil {
			return storeResult{}, err
		}
		mb, err := x.buckets()
		if err != nil {
			return storeResult{}, err
		}
		var r storeResult
		for _, uid := range sorted {
			key := be32(uint32(uid))
			v := mb.meta.Get(key)
			if v == nil {
				continue
			}
			m, err := decodeMeta(v)
			if err != nil {
				return storeResult{}, fmt.Errorf("message %d: %w", uid, err)
			}
			if conditional && m.modseq > unchangedSince {
				r.modified = append(r.modified, uid)
				continue
			}
			nf, err := applyFlags(m.flags, op, arg)
			if err != nil {
				return storeResult{}, fmt.Errorf("message %d: %w", uid, err)
			}
			if nf.equal(m.flags) {
				continue
			}
			wasSeen, isSeen := m.flags.sys&flagSeen != 0, nf.sys&flagSeen != 0
			switch {
			case wasSeen && !isSeen:
				x.rec.Unseen++
			case !wasSeen && isSeen:
				x.rec.Unseen--
			}
			old := m.modseq
			m.flags = nf
			m.modseq = x.bump()
			if err := mb.meta.Put(key, m.encode()); err != nil {
				return storeResult{}, err
			}
			if err := x.recordChange(uid, old, m.modseq); err != nil {
				return storeResult{}, err
			}
			if wasSeen != isSeen {
				if err := x.seenChanged(uid, m, isSeen, ev); err != nil {
					return storeResult{}, err
				}
			}
			list := nf.list()
			r.updates = append(r.updates, storage.FlagUpdate{UID: uid, Flags: list, ModSeq: m.modseq})
			ev.Add(storage.Event{Kind: storage.EventFlags, User: x.u.addr, MailboxID: x.id, UID: uid, Flags: slices.Clone(list), ModSeq: m.modseq})
		}
		if len(r.updates) > 0 {
			if err := x.save(); err != nil {
				return storeResult{}, err
			}
		}
		return r, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("storage: store flags: %w", err)
	}
	return res.updates, res.modified, nil
}

// Expunge removes the \Deleted messages (of uids, when given).
func (s *boltStore) Expunge(ctx context.Context, user string, mailboxID uint64, uids []imap.UID) ([]imap.UID, error) {
	var sorted []imap.UID
	if uids != nil {
		sorted = sortedUIDs(uids)
	}
	all := uids == nil
	removed, err := write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) ([]imap.UID, error) {
		x, err := openBox(tx, user, mailboxID)
		if err != nil {
			return nil, err
		}
		mb, err := x.buckets()
		if err != nil {
			return nil, err
		}
		var gone []imap.UID
		if all {
			// Only the flags byte is looked at; nothing is decoded.
			c := mb.meta.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if len(k) == 4 && len(v) > metaFlagsOffset && v[metaFlagsOffset]&flagDeleted != 0 {
					gone = append(gone, imap.UID(binary.BigEndian.Uint32(k)))
				}
			}
		} else {
			for _, uid := range sorted {
				v := mb.meta.Get(be32(uint32(uid)))
				if len(v) > metaFlagsOffset && v[metaFlagsOffset]&flagDeleted != 0 {
					gone = append(gone, uid)
				}
			}
		}
		// Deleting while a cursor walks the bucket skips keys, hence two
		// passes.
		for _, uid := range gone {
			m, err := decodeMeta(mb.meta.Get(be32(uint32(uid))))
			if err != nil {
				return nil, fmt.Errorf("message %d: %w", uid, err)
			}
			if err := x.remove(mb, uid, m, ev); err != nil {
				return nil, err
			}
		}
		if len(gone) > 0 {
			if err := x.save(); err != nil {
				return nil, err
			}
		}
		return gone, nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: expunge: %w", err)
	}
	return removed, nil
}

// Copy copies messages into the mailbox named dest, keeping flags and
// internal dates.
func (s *boltStore) Copy(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, dest string) (*storage.CopyResult, error) {
	res, err := s.copyMessages(ctx, user, mailboxID, uids, dest, false)
	if err != nil {
		return nil, fmt.Errorf("storage: copy: %w", err)
	}
	return res, nil
}

// Move copies and then removes the originals in one transaction; the
// events are every Append in dest, then every Expunge in the source.
func (s *boltStore) Move(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, dest string) (*storage.CopyResult, error) {
	res, err := s.copyMessages(ctx, user, mailboxID, uids, dest, true)
	if err != nil {
		return nil, fmt.Errorf("storage: move: %w", err)
	}
	return res, nil
}

func (s *boltStore) copyMessages(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, dest string, move bool) (*storage.CopyResult, error) {
	destName, err := storage.NormalizeMailboxName(dest)
	if err != nil {
		return nil, err
	}
	sorted := sortedUIDs(uids)
	return write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (*storage.CopyResult, error) {
		u, err := openUser(tx, user)
		if err != nil {
			return nil, err
		}
		src, err := u.box(mailboxID)
		if err != nil {
			return nil, err
		}
		dst, err := u.boxByName(destName)
		if err != nil {
			return nil, err
		}
		if dst.id == src.id {
			// One record, or the second save would undo the first's counters.
			dst = src
		}
		smb, err := src.buckets()
		if err != nil {
			return nil, err
		}
		if !move {
			if err := s.checkQuota(u, copiedBytes(smb, sorted)); err != nil {
				return nil, err
			}
		}
		res := &storage.CopyResult{UIDValidity: dst.rec.UIDValidity}
		var metas []metaRecord
		for _, uid := range sorted {
			key := be32(uint32(uid))
			mv := smb.meta.Get(key)
			if mv == nil {
				continue
			}
			m, err := decodeMeta(mv)
			if err != nil {
				return nil, fmt.Errorf("message %d: %w", uid, err)
			}
			// The values point into the database's memory; bolt keeps them
			// valid for the whole transaction (it dereferences before any
			// remap and frees pages only after commit), which is as long as
			// Put needs them.
			parsed := smb.parsed.Get(key)
			if parsed == nil {
				return nil, fmt.Errorf("message %d: %w", uid, errCorrupt)
			}
			// A shared body gets one more ref, not a copy (bodies.go).
			body, err := src.form(smb, key)
			if err != nil {
				return nil, fmt.Errorf("message %d: %w", uid, err)
			}
			newUID, err := dst.put(mv, parsed, body, m.flags, m.size, ev)
			if err != nil {
				return nil, err
			}
			res.SourceUIDs = append(res.SourceUIDs, uid)
			res.DestUIDs = append(res.DestUIDs, newUID)
			metas = append(metas, m)
		}
		if move {
			for i, uid := range res.SourceUIDs {
				if err := src.trackMove(uid, dst, res.DestUIDs[i], ev); err != nil {
					return nil, err
				}
				if err := src.remove(smb, uid, metas[i], ev); err != nil {
					return nil, err
				}
			}
		}
		if len(res.SourceUIDs) > 0 {
			if err := dst.save(); err != nil {
				return nil, err
			}
			if move && src != dst {
				if err := src.save(); err != nil {
					return nil, err
				}
			}
		}
		return res, nil
	})
}
