package control

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/pochta/pochta/storage"
)

// QueueAPI administers the outbound queue (`pochta queue …`). Entries are
// storage.QueueEntry, whose JSON is SPEC.md's; one storage.QueueFilter
// serves the CLI, this API and the store.
type QueueAPI interface {
	// QueueList lists the entries f selects, by ID, without bodies.
	// storage.ErrInvalid names the allowed values of a bad filter.
	QueueList(ctx context.Context, f storage.QueueFilter) ([]storage.QueueEntry, error)
	// QueueShow returns one entry with its body.
	QueueShow(ctx context.Context, id uint64) (*storage.QueueEntry, error)
	// QueueResend puts a failed or sent entry back into the outbox with
	// its attempts reset; a running daemon's queue picks it up at once.
	QueueResend(ctx context.Context, id uint64) (*storage.QueueEntry, error)
	// QueueDelete removes an entry.
	QueueDelete(ctx context.Context, id uint64) error
}

// QueueList implements API.
func (l *Local) QueueList(ctx context.Context, f storage.QueueFilter) ([]storage.QueueEntry, error) {
	list, err := l.Store.QueueEntries(ctx, f)
	if err != nil {
		return nil, &Problem{"cannot list the queue: " + rootCause(err), err}
	}
	return list, nil
}

// QueueShow implements API.
func (l *Local) QueueShow(ctx context.Context, id uint64) (*storage.QueueEntry, error) {
	e, err := l.Store.QueueEntry(ctx, id)
	if err != nil {
		return nil, queueProblem("show", id, err)
	}
	return e, nil
}

// QueueResend implements API.
func (l *Local) QueueResend(ctx context.Context, id uint64) (*storage.QueueEntry, error) {
	e, err := l.Store.ResendQueueEntry(ctx, id, time.Now())
	if err != nil {
		return nil, queueProblem("resend", id, err)
	}
	return e, nil
}

// QueueDelete implements API.
func (l *Local) QueueDelete(ctx context.Context, id uint64) error {
	if err := l.Store.DeleteQueueEntry(ctx, id); err != nil {
		return queueProblem("delete", id, err)
	}
	return nil
}

func queuePath(id uint64) string {
	return "/v1/queue/" + strconv.FormatUint(id, 10)
}

// QueueList implements API.
func (c *Client) QueueList(ctx context.Context, f storage.QueueFilter) ([]storage.QueueEntry, error) {
	q := url.Values{}
	for k, v := range map[string]string{"status": f.Status, "source": f.Source, "user": f.User} {
		if v != "" {
			q.Set(k, v)
		}
	}
	path := "/v1/queue"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var list []storage.QueueEntry
	if err := c.call(ctx, http.MethodGet, path, nil, &list); err != nil {
		return nil, err
	}
	return list, nil
}

// QueueShow implements API.
func (c *Client) QueueShow(ctx context.Context, id uint64) (*storage.QueueEntry, error) {
	var e storage.QueueEntry
	if err := c.call(ctx, http.MethodGet, queuePath(id), nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// QueueResend implements API.
func (c *Client) QueueResend(ctx context.Context, id uint64) (*storage.QueueEntry, error) {
	var e storage.QueueEntry
	if err := c.call(ctx, http.MethodPost, queuePath(id)+"/resend", nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// QueueDelete implements API.
func (c *Client) QueueDelete(ctx context.Context, id uint64) error {
	return c.call(ctx, http.MethodDelete, queuePath(id), nil, nil)
}

func (h *handler) registerQueue(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/queue", h.queueList)
	mux.HandleFunc("GET /v1/queue/{id}", h.queueShow)
	mux.HandleFunc("POST /v1/queue/{id}/resend", h.queueResend)
	mux.HandleFunc("DELETE /v1/queue/{id}", h.queueDelete)
}

func (h *handler) queueList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := storage.QueueFilter{Status: q.Get("status"), Source: q.Get("source"), User: q.Get("user")}
	list, err := h.api.QueueList(r.Context(), f)
	h.reply(w, r, list, err)
}

// queueID parses the {id} of a queue path.
func queueID(r *http.Request) (uint64, error) {
	s := r.PathValue("id")
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("queue entry ID %q: want a positive number: %w", s, storage.ErrInvalid)
	}
	return id, nil
}

func (h *handler) queueShow(w http.ResponseWriter, r *http.Request) {
	id, err := queueID(r)
	if err != nil {
		h.reply(w, r, nil, err)
		return
	}
	e, err := h.api.QueueShow(r.Context(), id)
	h.reply(w, r, e, err)
}

func (h *handler) queueResend(w http.ResponseWriter, r *http.Request) {
	id, err := queueID(r)
	if err != nil {
		h.reply(w, r, nil, err)
		return
	}
	e, err := h.api.QueueResend(r.Context(), id)
	h.reply(w, r, e, err)
}

func (h *handler) queueDelete(w http.ResponseWriter, r *http.Request) {
	id, err := queueID(r)
	if err != nil {
		h.reply(w, r, nil, err)
		return
	}
	h.reply(w, r, struct{}{}, h.api.QueueDelete(r.Context(), id))
}
