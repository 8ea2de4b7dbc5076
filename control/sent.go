package control

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// SentAPI reports read tracking: who has not read a user's sent messages.
type SentAPI interface {
	// SentStatus lists the messages address has sent, oldest first, with
	// each recipient's state. storage.ErrNotFound for an unknown user.
	SentStatus(ctx context.Context, address string) ([]SentMessage, error)
}

// SentMessage is one sent message as `pochta sent status` shows it.
type SentMessage struct {
	ID         uint64          `json:"id"`
	MessageID  string          `json:"message_id"`
	Subject    string          `json:"subject"`
	Date       time.Time       `json:"date"`
	Recipients []SentRecipient `json:"recipients"`
	// Pending are the recipients who have not read it (local) or whose
	// copy the relay has not accepted yet (external): the seed's "Not
	// delivered" column. Empty when everyone has it.
	Pending []string `json:"pending"`
}

// SentRecipient is one recipient's read-tracking state: unread, read,
// deleted or expired for local users; queued, relayed or failed for
// external addresses.
type SentRecipient struct {
	Address  string    `json:"address"`
	External bool      `json:"external"`
	State    string    `json:"state"`
	Changed  time.Time `json:"changed"`
}

// SentStatus implements API.
func (l *Local) SentStatus(ctx context.Context, address string) ([]SentMessage, error) {
	list, err := l.Store.SentStatus(ctx, address)
	if err != nil {
		return nil, userProblem("show the sent status of", address, err)
	}
	out := make([]SentMessage, 0, len(list))
	for _, m := range list {
		sm := SentMessage{ID: m.ID, MessageID: m.MessageID, Subject: m.Subject, Date: m.Date,
			Recipients: make([]SentRecipient, 0, len(m.Recipients)), Pending: []string{}}
		for _, r := range m.Recipients {
			sm.Recipients = append(sm.Recipients, SentRecipient{Address: r.Address, External: r.External, State: r.State, Changed: r.Changed})
			if r.Pending() {
				sm.Pending = append(sm.Pending, r.Address)
			}
		}
		out = append(out, sm)
	}
	return out, nil
}

// SentStatus implements API.
func (c *Client) SentStatus(ctx context.Context, address string) ([]SentMessage, error) {
	var list []SentMessage
	if err := c.call(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(address)+"/sent", nil, &list); err != nil {
		return nil, err
	}
	return list, nil
}

func (h *handler) registerSent(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/users/{address}/sent", h.sentStatus)
}

func (h *handler) sentStatus(w http.ResponseWriter, r *http.Request) {
	list, err := h.api.SentStatus(r.Context(), r.PathValue("address"))
	h.reply(w, r, list, err)
}
