// Package web serves pochta's web interface over HTTPS: sign-in, the queue
// page (the seed's "E-mail Queue"), the alert centre and the JSON API those
// pages use (SPEC.md "Web interface").
//
// What it promises:
//   - Who sees what: a user sees and acts on their own queue entries only
//     (mail they submitted); an administrator sees and acts on every entry,
//     the system notifications among them. The handler asks the session,
//     never the request, who is asking; another user's entry answers 403.
//   - Sign-in takes the mail password; failures count in the same
//     abuse.Logins as SMTP and IMAP, so a guesser is slowed and then refused
//     on every port alike, and a refused attempt never reaches the password
//     check.
//   - Sessions live in the store (a hash of the token only), so they survive
//     a restart; `user passwd` and `user del` end them. The cookie
//     pochta_session is HttpOnly, Secure and SameSite=Strict.
//   - Every state-changing request carries the session's CSRF token (header
//     X-CSRF-Token or form field csrf) or gets 403; POST /login is the one
//     exception.
//   - Pages are html/template: every value from mail (subjects, addresses,
//     relay replies) is escaped. No inline script runs (the CSP allows
//     scripts from /static/ only); every page works without JavaScript, which
//     only adds confirmations, live updates and the body on demand.
//   - Mail shown by the mail page is data, never code: HTML is sanitised
//     with bluemonday on the server (no script, handlers, styles,
//     javascript: links), every remote image src is removed until the user
//     asks for it, a relative src always (it would ask this site with the
//     user's cookie), and attachments are sent as downloads.
//   - The mail page sends through Options.Submit, the SMTP submission code
//     itself: the same From rule, limits, copies, tracking and queue.
//   - API errors are {"error": "…"} with a fitting status; lists are arrays,
//     [] when empty. Request bodies, headers and durations are bounded.
package web

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pochta/pochta/abuse"
	"github.com/pochta/pochta/auth"
	"github.com/pochta/pochta/storage"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Limits of what a client may send.
const (
	maxFormBody = 64 << 10 // sign-in and action forms, JSON requests
	maxHeader   = 32 << 10
	maxIDs      = 1000 // entries one resend or delete may name
	// defaultMaxMessageSize is Options.MaxMessageSize's default (smtpd's).
	defaultMaxMessageSize = 25 << 20
)

// Options configure a Server.
type Options struct {
	Store storage.Store
	// Auth checks passwords: the daemon's one checker (package auth: the
	// failed-login throttle, the login cache and the bounded pool of
	// password checks), shared with SMTP and IMAP. When nil, one is made
	// from Store and Logins.
	Auth *auth.Authenticator
	// Logins is the failed-login throttle for an Auth made here; nil gives
	// the web interface one of its own.
	Logins *abuse.Logins
	// TLSConfig serves HTTPS (Serve); the handler itself does not need it.
	TLSConfig *tls.Config
	// HSTS sends Strict-Transport-Security: set it with a real certificate,
	// not the self-signed one.
	HSTS bool
	// Submit sends a message from the compose form through SMTP
	// submission (smtpd.Server.Submit); nil answers 503.
	Submit SubmitFunc
	// MaxMessageSize is [smtp] max_message_size: a compose request (its
	// text and files) larger than this is refused while it is read, with
	// submission's own 552 sentence; 0 means 25 MiB.
	MaxMessageSize int64
	// PollInterval is the server's default client check interval.
	PollInterval time.Duration
	// Postmaster is the address alerts come from.
	Postmaster string
	// SessionTTL is how long a sign-in lasts; 0 means 7 days.
	SessionTTL time.Duration
	// LivePoll is how often the queue page refreshes itself while entries
	// are waiting; 0 means 3 seconds.
	LivePoll time.Duration
	Logger   *slog.Logger
}

// Server is the web interface.
type Server struct {
	opts    Options
	log     *slog.Logger
	pages   map[string]*template.Template
	handler http.Handler
	http    *http.Server
	events  *hub
}

// New prepares the web interface; Serve starts it.
func New(o Options) (*Server, error) {
	if o.Store == nil {
		return nil, errors.New("web: no store")
	}
	if o.Auth == nil {
		if o.Logins == nil {
			o.Logins = abuse.NewLogins(abuse.LoginOptions{})
		}
		o.Auth = auth.New(auth.Options{Check: o.Store.Authenticate, Logins: o.Logins})
	}
	if o.SessionTTL == 0 {
		o.SessionTTL = 7 * 24 * time.Hour
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = defaultMaxMessageSize
	}
	if o.LivePoll == 0 {
		o.LivePoll = 3 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Server{opts: o, log: o.Logger, events: newHub()}
	var err error
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	o.Store.Listen(s.events.publish)
	mux := http.NewServeMux()
	s.routes(mux)
	s.handler = s.secure(gzipped(mux))
	s.http = &http.Server{
		Handler:           s.handler,
		TLSConfig:         o.TLSConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// The event stream lifts this for itself.
		WriteTimeout:   60 * time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: maxHeader,
		ErrorLog:       slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
	}
	s.http.Protocols = new(http.Protocols)
	s.http.Protocols.SetHTTP1(true)
	s.http.Protocols.SetHTTP2(true)
	return s, nil
}

// Handler is the whole interface as an http.Handler (tests serve it
// themselves).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves HTTPS (HTTP/2 and HTTP/1.1) on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("web: no TLS configuration")
	}
	return s.http.ServeTLS(l, "", "")
}

// Shutdown stops accepting, ends the event streams and waits for requests
// in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.events.close()
	return s.http.Shutdown(ctx)
}

func (s *Server) routes(mux *http.ServeMux) {
	// The address alone opens the Mail page, where signing in leads too
	// (SPEC); the queue is a link away.
	mux.HandleFunc("GET /{$}", s.page(func(w http.ResponseWriter, r *http.Request, _ *session) {
		http.Redirect(w, r, "/mail", http.StatusSeeOther)
	}))
	mux.HandleFunc("GET /login", s.loginForm)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.page(s.logout))
	mux.HandleFunc("GET /mail", s.page(s.mailPage))
	mux.HandleFunc("POST /mail/pane", s.page(s.mailPane))
	mux.HandleFunc("GET /queue", s.page(s.queuePage))
	mux.HandleFunc("POST /queue/action", s.page(s.queueAction))
	mux.HandleFunc("POST /queue/columns", s.page(s.queueColumns))
	mux.HandleFunc("GET /queue/{id}", s.page(s.queueEntryPage))
	mux.HandleFunc("GET /alerts", s.page(s.alertsPage))
	mux.HandleFunc("POST /alerts/read", s.page(s.alertsRead))
	static, _ := fs.Sub(staticFiles, "static")
	files := http.FileServerFS(static)
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})))

	mux.HandleFunc("GET /api/v1/session", s.api(s.apiSession))
	mux.HandleFunc("PUT /api/v1/settings", s.api(s.apiSettings))
	mux.HandleFunc("GET /api/v1/queue", s.api(s.apiQueue))
	mux.HandleFunc("GET /api/v1/queue/{id}", s.api(s.apiQueueEntry))
	mux.HandleFunc("POST /api/v1/queue/resend", s.api(s.apiResend))
	mux.HandleFunc("POST /api/v1/queue/delete", s.api(s.apiDelete))
	mux.HandleFunc("GET /api/v1/alerts", s.api(s.apiAlerts))
	mux.HandleFunc("GET /api/v1/events", s.api(s.apiEvents))
	mux.HandleFunc("GET /api/v1/mailboxes", s.api(s.apiMailboxes))
	mux.HandleFunc("GET /api/v1/addresses", s.api(s.apiAddresses))
	mux.HandleFunc("GET /api/v1/messages", s.api(s.apiMessages))
	mux.HandleFunc("POST /api/v1/send", s.api(s.apiSend))
	mux.HandleFunc("POST /api/v1/drafts", s.api(s.apiDraft))
	mux.HandleFunc("GET /api/v1/messages/{uid}", s.api(s.apiMessage))
	mux.HandleFunc("GET /api/v1/messages/{uid}/attachments/{index}", s.api(s.apiAttachment))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		jsonError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
}

// secure adds the security headers every answer carries and bounds
// request bodies.
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		if s.opts.HSTS {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		limit := int64(maxFormBody)
		if r.URL.Path == "/api/v1/send" || r.URL.Path == "/api/v1/drafts" {
			limit = s.composeLimit()
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	})
}

// errorText is the one sentence a person reads for an internal failure;
// the details go to the log.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("web request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	if strings.HasPrefix(r.URL.Path, "/api/") {
		jsonError(w, http.StatusInternalServerError, "internal error; the server log has the details")
		return
	}
	http.Error(w, "Internal error; the server log has the details.", http.StatusInternalServerError)
}
