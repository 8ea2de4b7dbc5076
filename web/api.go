package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pochta/pochta/storage"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		jsonError(w, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// jsonError answers {"error": msg}.
func jsonError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// tooLargeBody is readJSON's error for a body over the request limit.
type tooLargeBody struct{ limit int64 }

func (e tooLargeBody) Error() string {
	return fmt.Sprintf("request body larger than %d bytes", e.limit)
}

// readJSON decodes a request body of exactly one JSON value without unknown
// fields; the error is the sentence for a 400.
func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return tooLargeBody{tooBig.Limit}
		case errors.Is(err, io.EOF):
			return errors.New("request body: want a JSON object, got nothing")
		}
		return fmt.Errorf("request body is not the JSON this endpoint takes: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return tooLargeBody{tooBig.Limit}
		}
		return errors.New("request body: want one JSON object, got more after it")
	}
	return nil
}

// storeError answers an error of the store with its status.
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		jsonError(w, http.StatusNotFound, strings.TrimPrefix(err.Error(), "storage: "))
	case errors.Is(err, storage.ErrInvalid):
		// A value the request carried (a mailbox name, an address).
		jsonError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), "storage: "))
	default:
		s.internal(w, r, err)
	}
}

// sessionJSON is GET /api/v1/session (SPEC.md).
type sessionJSON struct {
	Address      string `json:"address"`
	Admin        bool   `json:"admin"`
	CSRFToken    string `json:"csrf_token"`
	PollInterval int64  `json:"poll_interval"` // seconds
}

func (s *Server) sessionJSON(r *http.Request, ss *session) (*sessionJSON, error) {
	u, err := s.opts.Store.User(r.Context(), ss.Address)
	if err != nil {
		return nil, err
	}
	poll := u.Settings.PollInterval
	if poll == 0 {
		poll = s.opts.PollInterval
	}
	return &sessionJSON{Address: ss.Address, Admin: ss.Admin, CSRFToken: ss.CSRFToken, PollInterval: int64(poll / time.Second)}, nil
}

func (s *Server) apiSession(w http.ResponseWriter, r *http.Request, ss *session) {
	j, err := s.sessionJSON(r, ss)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

// Bounds of a poll interval a user may store, in seconds.
const (
	minPollSeconds = 10
	maxPollSeconds = 7 * 24 * 3600
)

func (s *Server) apiSettings(w http.ResponseWriter, r *http.Request, ss *session) {
	var req struct {
		PollInterval *int64 `json:"poll_interval"`
	}
	if err := readJSON(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.PollInterval == nil {
		jsonError(w, http.StatusBadRequest, `want {"poll_interval": SECONDS}`)
		return
	}
	p := *req.PollInterval
	if p != 0 && (p < minPollSeconds || p > maxPollSeconds) {
		jsonError(w, http.StatusBadRequest, fmt.Sprintf("poll_interval %d: want 0 (the server default) or %d to %d seconds", p, minPollSeconds, maxPollSeconds))
		return
	}
	if err := s.opts.Store.SetSettings(r.Context(), ss.Address, storage.Settings{PollInterval: time.Duration(p) * time.Second}); err != nil {
		s.storeError(w, r, err)
		return
	}
	s.apiSession(w, r, ss)
}

// queueQuery is what a queue listing asks for: the filter (one
// storage.QueueFilter for the CLI, this API and the page) and the page.
type queueQuery struct {
	Filter storage.QueueFilter
	Page   storage.QueuePage
}

// errForbidden marks what a user may not ask.
var errForbidden = errors.New("forbidden")

// parseQueueQuery reads status, source, user (admins), after, limit and
// order, and narrows the filter to what the user may see.
func parseQueueQuery(q url.Values, ss *session) (queueQuery, error) {
	qq := queueQuery{Filter: storage.QueueFilter{Status: q.Get("status"), Source: q.Get("source"), MessageID: q.Get("message_id")}}
	if ss.Admin {
		qq.Filter.User = q.Get("user")
	} else {
		if u := q.Get("user"); u != "" && !strings.EqualFold(u, ss.Address) {
			return qq, fmt.Errorf("only administrators see other users' entries: %w", errForbidden)
		}
		if qq.Filter.Source == storage.SourceSystem {
			return qq, fmt.Errorf("only administrators see system notifications: %w", errForbidden)
		}
		qq.Filter.User, qq.Filter.Source = ss.Address, storage.SourceUser
	}
	if err := qq.Filter.Validate(); err != nil {
		return qq, err
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return qq, fmt.Errorf("after %q: want an entry ID: %w", v, storage.ErrInvalid)
		}
		qq.Page.After = n
	}
	qq.Page.Limit = 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return qq, fmt.Errorf("limit %q: want 1 to 1000: %w", v, storage.ErrInvalid)
		}
		qq.Page.Limit = n
	}
	switch o := q.Get("order"); o {
	case "", "newest":
	case "oldest":
		qq.Page.Oldest = true
	default:
		return qq, fmt.Errorf("order %q: want newest or oldest: %w", o, storage.ErrInvalid)
	}
	return qq, nil
}

// queryProblem is the status and the sentence for a refused query.
func queryProblem(err error) (int, string) {
	status := http.StatusBadRequest
	if errors.Is(err, errForbidden) {
		status = http.StatusForbidden
	}
	return status, strings.TrimSuffix(strings.TrimSuffix(err.Error(), ": "+errForbidden.Error()), ": "+storage.ErrInvalid.Error())
}

func queryError(w http.ResponseWriter, err error) {
	status, msg := queryProblem(err)
	jsonError(w, status, msg)
}

// apiQueue is GET /api/v1/queue: an array of entries in the JSON of
// `pochta queue list --json`; the header X-Next-After continues the list.
func (s *Server) apiQueue(w http.ResponseWriter, r *http.Request, ss *session) {
	qq, err := parseQueueQuery(r.URL.Query(), ss)
	if err != nil {
		queryError(w, err)
		return
	}
	list, next, err := s.opts.Store.QueueEntriesPage(r.Context(), qq.Filter, qq.Page)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if next != 0 {
		w.Header().Set("X-Next-After", strconv.FormatUint(next, 10))
	}
	writeJSON(w, http.StatusOK, list)
}

func parseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("queue entry ID %q: want a positive number", s)
	}
	return id, nil
}

// entryFor loads an entry the user may see; the error is answered.
func (s *Server) entryFor(w http.ResponseWriter, r *http.Request, ss *session, id uint64) *storage.QueueEntry {
	e, err := s.opts.Store.QueueEntry(r.Context(), id)
	if err != nil {
		s.storeError(w, r, err)
		return nil
	}
	if !ss.canAct(e) {
		jsonError(w, http.StatusForbidden, fmt.Sprintf("queue entry %d is not yours", id))
		return nil
	}
	return e
}

func (s *Server) apiQueueEntry(w http.ResponseWriter, r *http.Request, ss *session) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	if e := s.entryFor(w, r, ss, id); e != nil {
		writeJSON(w, http.StatusOK, e)
	}
}

// readIDs reads {"ids": [...]}; the error is answered.
func readIDs(w http.ResponseWriter, r *http.Request) []uint64 {
	var req struct {
		IDs []uint64 `json:"ids"`
	}
	if err := readJSON(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return nil
	}
	if len(req.IDs) == 0 || len(req.IDs) > maxIDs {
		jsonError(w, http.StatusBadRequest, fmt.Sprintf(`want {"ids": [ID, …]} with 1 to %d IDs`, maxIDs))
		return nil
	}
	return req.IDs
}

// actOn checks every entry before acting on any: a request naming one entry
// the user may not touch changes nothing.
func (s *Server) actOn(w http.ResponseWriter, r *http.Request, ss *session, ids []uint64, resend bool) ([]*storage.QueueEntry, bool) {
	var list []*storage.QueueEntry
	for _, id := range ids {
		e := s.entryFor(w, r, ss, id)
		if e == nil {
			return nil, false
		}
		if resend && e.Status != storage.QueueFailed && e.Status != storage.QueueSent {
			jsonError(w, http.StatusConflict, fmt.Sprintf("queue entry %d is %s: only failed or sent entries can be resent", id, e.Status))
			return nil, false
		}
		list = append(list, e)
	}
	return list, true
}

func (s *Server) apiResend(w http.ResponseWriter, r *http.Request, ss *session) {
	ids := readIDs(w, r)
	if ids == nil {
		return
	}
	if _, ok := s.actOn(w, r, ss, ids, true); !ok {
		return
	}
	out := []*storage.QueueEntry{}
	for _, id := range ids {
		e, err := s.opts.Store.ResendQueueEntry(r.Context(), id, time.Now())
		if err != nil {
			s.storeError(w, r, err)
			return
		}
		s.log.Info("web: queue entry resent", "user", ss.Address, "id", id)
		out = append(out, e)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiDelete(w http.ResponseWriter, r *http.Request, ss *session) {
	ids := readIDs(w, r)
	if ids == nil {
		return
	}
	if _, ok := s.actOn(w, r, ss, ids, false); !ok {
		return
	}
	for _, id := range ids {
		if err := s.opts.Store.DeleteQueueEntry(r.Context(), id); err != nil && !errors.Is(err, storage.ErrNotFound) {
			s.storeError(w, r, err)
			return
		}
		s.log.Info("web: queue entry deleted", "user", ss.Address, "id", id)
	}
	writeJSON(w, http.StatusOK, map[string][]uint64{"deleted": ids})
}
