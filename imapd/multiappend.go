package imapd

import (
	"fmt"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/protocol"
	"github.com/pochta/pochta/storage"
)

// MULTIAPPEND (RFC 3502): every message of an APPEND goes through the same
// intake as a single one (the APPEND limit, CRLF line endings, the MIME
// nesting limit checked by storage), and all of them are stored in one
// storage transaction (Store.AppendMany) or none. The Sent de-duplication
// by Message-ID applies per message: a message that is the server's own
// Sent copy is not stored again, its APPENDUID entry is the UID of that
// copy, and it does not make the command fail, so the other messages are
// stored; a client re-uploading its Sent folder sees every message
// "stored" once.

var _ protocol.SessionMultiAppend = (*session)(nil)

// ReadAppend implements protocol.SessionMultiAppend.
func (s *session) ReadAppend(r imap.LiteralReader, options *imap.AppendOptions) (_ any, _ int64, err error) {
	defer s.guard("APPEND", &err)
	size := r.Size()
	if size > int64(s.srv.appendLimit) {
		return nil, 0, imapNo(imap.ResponseCodeTooBig, "Message is larger than the APPEND limit")
	}
	raw, err := readAppended(r, size)
	if err != nil {
		return nil, 0, err
	}
	msg := &storage.NewMessage{
		Raw:          raw,
		Flags:        storableFlags(options.Flags),
		InternalDate: options.Time,
	}
	return msg, int64(len(raw)), nil
}

// AppendMany implements protocol.SessionMultiAppend.
func (s *session) AppendMany(name string, pending []any) (_ *protocol.MultiAppendData, err error) {
	defer s.guard("APPEND", &err)
	msgs := make([]*storage.NewMessage, len(pending))
	for i, p := range pending {
		m, ok := p.(*storage.NewMessage)
		if !ok {
			return nil, fmt.Errorf("message %d of APPEND is a %T", i+1, p)
		}
		msgs[i] = m
	}
	var res []*storage.Appended
	if len(msgs) == 1 {
		var a *storage.Appended
		if a, err = s.srv.store.Append(s.ctx, s.user, name, msgs[0]); err == nil {
			res = []*storage.Appended{a}
		}
	} else {
		res, err = s.srv.store.AppendMany(s.ctx, s.user, name, msgs)
	}
	if err != nil {
		if refusal := intakeRefusal(err); refusal != nil {
			return nil, refusal
		}
		return nil, s.destError("APPEND", err)
	}
	data := &protocol.MultiAppendData{UIDValidity: res[0].UIDValidity}
	var own []imap.UID
	for _, a := range res {
		data.UIDs = append(data.UIDs, a.UID)
		if v := s.view; v != nil && a.MailboxID == v.box.key.id {
			own = append(own, a.UID)
		}
	}
	if len(own) > 0 {
		// Let the EXISTS reach this client before the tagged OK.
		s.view.box.applyOwn(storage.EventAppend, own)
	}
	return data, nil
}
