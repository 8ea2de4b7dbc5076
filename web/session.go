package web

import (
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pochta/pochta/auth"
	"github.com/pochta/pochta/storage"
)

// cookieName is the session cookie (SPEC.md "Web interface").
const cookieName = "pochta_session"

// session is the signed-in user of a request.
type session struct {
	*storage.WebSession
	token string
}

// canAct reports whether the user may see and act on e: an administrator
// any entry, a user the mail they submitted.
func (ss *session) canAct(e *storage.QueueEntry) bool {
	return ss.Admin || (e.Source == storage.SourceUser && strings.EqualFold(e.User, ss.Address))
}

// lookup returns the request's session, or nil when it has none that is
// valid (no cookie, unknown, expired, forged, or ended by `user passwd`).
func (s *Server) lookup(r *http.Request) (*session, error) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil, nil
	}
	ws, err := s.opts.Store.WebSession(r.Context(), c.Value)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &session{WebSession: ws, token: c.Value}, nil
}

// csrfOK checks the token of a state-changing request.
func csrfOK(r *http.Request, ss *session) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return true
	}
	tok := r.Header.Get("X-CSRF-Token")
	if tok == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		tok = r.PostFormValue("csrf")
	}
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(ss.CSRFToken)) == 1
}

// page wraps a page handler: without a session it sends the browser to the
// sign-in form, and it refuses a state change without the CSRF token.
func (s *Server) page(fn func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss, err := s.lookup(r)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		if ss == nil {
			if r.Method != http.MethodGet {
				http.Error(w, "Sign in first.", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if !csrfOK(r, ss) {
			http.Error(w, "This form has expired or did not come from this site: reload the page and try again.", http.StatusForbidden)
			return
		}
		fn(w, r, ss)
	}
}

// api wraps a JSON handler: 401 without a session, 403 without the CSRF
// token.
func (s *Server) api(fn func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss, err := s.lookup(r)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		if ss == nil {
			jsonError(w, http.StatusUnauthorized, "sign in first (POST /login)")
			return
		}
		if !csrfOK(r, ss) {
			jsonError(w, http.StatusForbidden, "missing or wrong X-CSRF-Token header (GET /api/v1/session has the token)")
			return
		}
		fn(w, r, ss)
	}
}

// safeNext returns next when it is a path on this site, else /mail.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/mail"
	}
	if u, err := url.Parse(next); err != nil || u.Host != "" || u.Scheme != "" {
		return "/mail"
	}
	return next
}

// clientAddr is the address failed logins are counted by.
func clientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a
}

type loginView struct {
	Address string
	Next    string
	Error   string
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	if ss, _ := s.lookup(r); ss != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "login", nil, &loginView{Next: r.URL.Query().Get("next")})
}

// login is POST /login: the mail password, throttled like IMAP and SMTP.
// loginOrigin refuses a cross-origin POST /login (net/http's check of
// Sec-Fetch-Site and Origin against the request's own host).
var loginOrigin = http.NewCrossOriginProtection()

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	t := texts(r)
	// Login CSRF: a page on another site must not sign a visitor into an
	// account of its choosing (what they then write would land there).
	// The browser says where a request comes from (Sec-Fetch-Site, else
	// Origin); requests that say neither (curl, old browsers) pass.
	if err := loginOrigin.Check(r); err != nil {
		s.render(w, r, http.StatusForbidden, "login", nil, &loginView{Error: t["login_cross_site"]})
		return
	}
	address := strings.TrimSpace(r.PostFormValue("address"))
	password := r.PostFormValue("password")
	v := &loginView{Address: address, Next: r.PostFormValue("next")}
	if address == "" || password == "" {
		v.Error = t["login_missing"]
		s.render(w, r, http.StatusBadRequest, "login", nil, v)
		return
	}
	addr := clientAddr(r)
	res, err := s.opts.Auth.Login(r.Context(), addr, address, password)
	var refused *auth.RefusedError
	switch {
	case err == nil:
	case errors.As(err, &refused):
		v.Error = t["login_blocked"] + " " + refused.Until.Local().Format("15:04")
		w.Header().Set("Retry-After", retryAfter(refused.Until))
		s.render(w, r, http.StatusTooManyRequests, "login", nil, v)
		return
	case errors.Is(err, auth.ErrFailed):
		if res.Blocked {
			s.log.Warn("web sign-in: address blocked after repeated failures", "client", addr.String(), "account", auth.LogName(address))
		}
		v.Error = t["login_failed"]
		s.render(w, r, http.StatusUnauthorized, "login", nil, v)
		return
	case errors.Is(err, auth.ErrBusy):
		v.Error = t["login_busy"]
		w.Header().Set("Retry-After", "1")
		s.render(w, r, http.StatusServiceUnavailable, "login", nil, v)
		return
	default:
		s.internal(w, r, err)
		return
	}
	token, ws, err := s.opts.Store.CreateWebSession(r.Context(), res.Address, s.opts.SessionTTL)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: token, Path: "/",
		Expires: ws.Expires, MaxAge: int(s.opts.SessionTTL / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	s.log.Info("web sign-in", "user", res.Address, "client", addr.String())
	http.Redirect(w, r, safeNext(v.Next), http.StatusSeeOther)
}

func retryAfter(until time.Time) string {
	return strconv.Itoa(max(int(time.Until(until).Seconds())+1, 1))
}

// logout is POST /logout.
func (s *Server) logout(w http.ResponseWriter, r *http.Request, ss *session) {
	if err := s.opts.Store.DeleteWebSession(r.Context(), ss.token); err != nil {
		s.internal(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
