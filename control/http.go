package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/pochta/pochta/storage"
)

// maxRequestBody bounds what a control request may send; the API only ever
// receives small JSON objects.
const maxRequestBody = 1 << 20

// ErrNoDaemon is returned by Dial when no daemon listens on the socket.
var ErrNoDaemon = errors.New("no daemon is running")

// errorKinds maps the storage errors that cross the socket to stable names.
var errorKinds = map[string]error{
	"not_found":   storage.ErrNotFound,
	"exists":      storage.ErrExists,
	"protected":   storage.ErrProtected,
	"invalid":     storage.ErrInvalid,
	"auth_failed": storage.ErrAuthFailed,
	"closed":      storage.ErrClosed,
	"damaged":     storage.ErrDamaged,
}

type errorBody struct {
	// Error is the sentence a person reads (Problem.Sentence).
	Error string `json:"error"`
	Kind  string `json:"kind,omitempty"`
	// Detail is the internal chain behind it, for the debug log.
	Detail string `json:"detail,omitempty"`
}

// Handler serves api over HTTP+JSON.
func Handler(api API, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.Default()
	}
	h := &handler{api: api, log: logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/users", h.users)
	mux.HandleFunc("POST /v1/users", h.addUser)
	mux.HandleFunc("DELETE /v1/users/{address}", h.deleteUser)
	mux.HandleFunc("PUT /v1/users/{address}/password", h.setPassword)
	mux.HandleFunc("GET /v1/users/{address}/settings", h.settings)
	mux.HandleFunc("PATCH /v1/users/{address}/settings", h.settings)
	mux.HandleFunc("GET /v1/status", h.status)
	mux.HandleFunc("GET /v1/backup", h.backup)
	mux.HandleFunc("POST /v1/check", h.check)
	h.registerQueue(mux)
	h.registerSent(mux)
	return mux
}

type handler struct {
	api API
	log *slog.Logger
}

type addUserRequest struct {
	Address  string `json:"address"`
	Password string `json:"password"`
	Admin    bool   `json:"admin"`
}

type passwordRequest struct {
	Password string `json:"password"`
}

func (h *handler) users(w http.ResponseWriter, r *http.Request) {
	users, err := h.api.Users(r.Context())
	h.reply(w, r, users, err)
}

func (h *handler) addUser(w http.ResponseWriter, r *http.Request) {
	var req addUserRequest
	if !h.decode(w, r, &req) {
		return
	}
	u, err := h.api.AddUser(r.Context(), req.Address, req.Password, req.Admin)
	h.reply(w, r, u, err)
}

func (h *handler) deleteUser(w http.ResponseWriter, r *http.Request) {
	h.reply(w, r, struct{}{}, h.api.DeleteUser(r.Context(), r.PathValue("address")))
}

func (h *handler) setPassword(w http.ResponseWriter, r *http.Request) {
	var req passwordRequest
	if !h.decode(w, r, &req) {
		return
	}
	h.reply(w, r, struct{}{}, h.api.SetPassword(r.Context(), r.PathValue("address"), req.Password))
}

func (h *handler) settings(w http.ResponseWriter, r *http.Request) {
	var update *SettingsUpdate
	if r.Method == http.MethodPatch {
		update = new(SettingsUpdate)
		if !h.decode(w, r, update) {
			return
		}
	}
	s, err := h.api.Settings(r.Context(), r.PathValue("address"), update)
	h.reply(w, r, s, err)
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	s, err := h.api.Status(r.Context())
	h.reply(w, r, s, err)
}

type checkRequest struct {
	Repair bool `json:"repair"`
}

func (h *handler) check(w http.ResponseWriter, r *http.Request) {
	var req checkRequest
	if !h.decode(w, r, &req) {
		return
	}
	rep, err := h.api.Check(r.Context(), req.Repair)
	h.reply(w, r, rep, err)
}

func (h *handler) backup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	// Once the first byte is out the status is sent; a failure after that
	// can only be signalled by cutting the stream short, which the client
	// detects by comparing with the trailer.
	w.Header().Set("Trailer", "Pochta-Backup-Bytes")
	n, err := h.api.Backup(r.Context(), w)
	if err != nil {
		h.log.Error("control: backup failed", "err", err, "bytes", n)
		return
	}
	w.Header().Set("Pochta-Backup-Bytes", fmt.Sprint(n))
}

func (h *handler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		h.reply(w, r, nil, fmt.Errorf("bad request body: %v: %w", err, storage.ErrInvalid))
		return false
	}
	return true
}

func (h *handler) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		body := errorBody{Error: Sentence(err), Detail: err.Error()}
		var p *Problem
		if errors.As(err, &p) {
			body.Detail = p.Detail()
		}
		h.log.Debug("control: request refused", "method", r.Method, "path", r.URL.Path, "err", body.Error, "detail", body.Detail)
		status := http.StatusInternalServerError
		for kind, target := range errorKinds {
			if errors.Is(err, target) {
				body.Kind = kind
				status = http.StatusBadRequest
				if target == storage.ErrNotFound {
					status = http.StatusNotFound
				}
				break
			}
		}
		if status == http.StatusInternalServerError {
			h.log.Error("control: request failed", "err", err)
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

// Listen creates the control socket at path with mode 0600, replacing a
// stale socket left by a daemon that died. It refuses to replace a socket
// another daemon still answers on. The listener accepts connections from
// root and the daemon's own user only (peercred.go).
func Listen(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another daemon is answering on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket %s: remove stale socket: %w", path, err)
	}
	// The umask makes the socket 0600 from its creation on: there is no
	// moment when another local user could connect.
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return newCredListener(l), nil
}

// Client implements API over a running daemon's control socket.
type Client struct {
	http *http.Client
}

// Dial connects to the daemon's socket. It returns an error matching
// ErrNoDaemon when nothing listens there.
func Dial(path string) (*Client, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("control socket %s: %w", path, ErrNoDaemon)
		}
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			return nil, &Problem{Sentence: fmt.Sprintf("you may not use the control socket %s: run the command as root "+
				"or as the user the daemon runs as (such as sudo -u pochta pochta …)", path), Err: err}
		}
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	c.Close()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{http: &http.Client{Transport: tr}}, nil
}

// AddUser implements API.
func (c *Client) AddUser(ctx context.Context, address, password string, admin bool) (*UserInfo, error) {
	var u UserInfo
	err := c.call(ctx, http.MethodPost, "/v1/users", addUserRequest{address, password, admin}, &u)
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// SetPassword implements API.
func (c *Client) SetPassword(ctx context.Context, address, password string) error {
	return c.call(ctx, http.MethodPut, "/v1/users/"+url.PathEscape(address)+"/password", passwordRequest{password}, nil)
}

// DeleteUser implements API.
func (c *Client) DeleteUser(ctx context.Context, address string) error {
	return c.call(ctx, http.MethodDelete, "/v1/users/"+url.PathEscape(address), nil, nil)
}

// Users implements API.
func (c *Client) Users(ctx context.Context) ([]UserInfo, error) {
	var users []UserInfo
	if err := c.call(ctx, http.MethodGet, "/v1/users", nil, &users); err != nil {
		return nil, err
	}
	return users, nil
}

// Settings implements API.
func (c *Client) Settings(ctx context.Context, address string, update *SettingsUpdate) (*UserSettings, error) {
	method, body := http.MethodGet, any(nil)
	if update != nil {
		method, body = http.MethodPatch, update
	}
	var s UserSettings
	if err := c.call(ctx, method, "/v1/users/"+url.PathEscape(address)+"/settings", body, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Status implements API.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.call(ctx, http.MethodGet, "/v1/status", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Backup implements API.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/backup", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, decodeError(resp)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("backup: reading from daemon: %w", err)
	}
	if want := resp.Trailer.Get("Pochta-Backup-Bytes"); want != fmt.Sprint(n) {
		return n, fmt.Errorf("backup: daemon stopped after %d bytes (see its log)", n)
	}
	return n, nil
}

// Check implements API.
func (c *Client) Check(ctx context.Context, repair bool) (*storage.CheckReport, error) {
	var rep storage.CheckReport
	if err := c.call(ctx, http.MethodPost, "/v1/check", checkRequest{Repair: repair}, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("control: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("control: decode reply to %s %s: %w", method, path, err)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://pochta"+path, body)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control: talking to the daemon: %w", err)
	}
	return resp, nil
}

// remoteError is an error that came over the socket; it unwraps to the
// storage error of the same kind so callers can test it with errors.Is.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

func decodeError(resp *http.Response) error {
	var body errorBody
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxRequestBody)).Decode(&body); err != nil || body.Error == "" {
		return fmt.Errorf("control: daemon answered %s", resp.Status)
	}
	detail := body.Detail
	if detail == "" {
		detail = body.Error
	}
	return &Problem{Sentence: body.Error, Err: &remoteError{msg: detail, kind: errorKinds[body.Kind]}}
}
