package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Validate checks every value and returns all problems at once (each an
// *Error, joined with errors.Join). For a Config from Load, each error
// carries the file and line of the offending key.
func (c *Config) Validate() error {
	return joinErrors(c.validate())
}

type validator struct {
	src  *source
	errs []*Error
}

// fail reports msg against the first of keys, or, when the file set some of
// them, against the one set latest in the file: for a pair of keys that
// conflict, the line that made the conflict.
func (v *validator) fail(msg string, keys ...string) {
	key := keys[0]
	if v.src != nil {
		best := 0
		for _, k := range keys {
			if _, ok := v.src.defined[k]; ok {
				if l := v.src.lineOf(k); l >= best {
					key, best = k, l
				}
			}
		}
	}
	v.errs = append(v.errs, v.src.errorFor(key, msg))
}

func (c *Config) validate() []*Error {
	v := &validator{src: c.src}

	if strings.TrimSpace(c.Hostname) == "" {
		v.fail("must not be empty: it is the name this server gives in EHLO and Received headers", "hostname")
	} else if strings.ContainsFunc(c.Hostname, isSpaceOrControl) {
		v.fail(fmt.Sprintf("%q must not contain spaces", c.Hostname), "hostname")
	}
	if len(c.Domains) == 0 {
		v.fail(`must list at least one local domain, such as ["example.com"]`, "domains")
	}
	seen := make(map[string]bool)
	for _, d := range c.Domains {
		switch {
		case d != strings.ToLower(d):
			v.fail(fmt.Sprintf("%q must be written in lower case (%q)", d, strings.ToLower(d)), "domains")
		case !validDomain(d):
			v.fail(fmt.Sprintf("%q is not a valid domain name", d), "domains")
		case seen[d]:
			v.fail(fmt.Sprintf("%q is listed twice", d), "domains")
		}
		seen[d] = true
	}
	v.nonEmpty(c.DataDir, "data_dir")

	ms := c.MessageServer
	v.nonEmpty(ms.Database, "message_server.database")
	if IsPostgresURL(ms.Database) {
		// The value is not repeated: it may hold a password.
		if _, err := url.Parse(ms.Database); err != nil {
			v.fail("is not a valid PostgreSQL URL (want postgres://user@host:5432/dbname)", "message_server.database")
		}
	} else if scheme, _, ok := strings.Cut(ms.Database, "://"); ok && !strings.ContainsAny(scheme, `/\`) {
		v.fail(fmt.Sprintf("%s:// is not a database pochta knows: give a bbolt file name (such as \"pochta.db\") or a postgres:// URL", scheme), "message_server.database")
	}
	if ms.PollInterval.Duration <= 0 {
		v.fail("must be positive", "message_server.poll_interval")
	}
	if ms.MessageLifetime.Duration < 0 {
		v.fail(`must not be negative ("0s" keeps unread mail forever)`, "message_server.message_lifetime")
	}
	if ms.Quota < 0 {
		v.fail("must not be negative (0 means no limit)", "message_server.quota")
	}
	if len(ms.Node) > 255 || strings.ContainsFunc(ms.Node, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		v.fail(fmt.Sprintf("%q is not a node name (at most 255 characters, no spaces or control characters)", ms.Node), "message_server.node")
	}

	s := c.SMTP
	v.listen(s.Submission, "smtp.submission")
	v.listen(s.Submissions, "smtp.submissions")
	v.listen(s.Inbound, "smtp.inbound")
	if s.Submission == "" && s.Submissions == "" {
		v.fail("submission and submissions cannot both be empty: users would have no way to send mail",
			"smtp.submission", "smtp.submissions")
	}
	for _, n := range s.TrustedNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			msg := fmt.Sprintf("%q is not a network in CIDR notation", n)
			if a, err := netip.ParseAddr(n); err == nil {
				msg += fmt.Sprintf(" (write %q)", netip.PrefixFrom(a, a.BitLen()).String())
			}
			v.fail(msg, "smtp.trusted_networks")
		}
	}
	if s.MaxMessageSize < 1024 {
		v.fail(fmt.Sprintf("must be at least 1024 (bytes), not %d", s.MaxMessageSize), "smtp.max_message_size")
	}
	if s.MaxRecipients < 1 {
		v.fail("must be at least 1", "smtp.max_recipients")
	}

	im := c.IMAP
	v.listen(im.Listen, "imap.listen")
	v.listen(im.TLSListen, "imap.tls_listen")
	if im.Listen == "" && im.TLSListen == "" {
		v.fail("listen and tls_listen cannot both be empty: users would have no way to read mail",
			"imap.listen", "imap.tls_listen")
	}

	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		v.fail("cert_file and key_file must be set together (leave both empty for a self-signed certificate)",
			"tls.cert_file", "tls.key_file")
	}
	v.readable(c.TLS.CertFile, "tls.cert_file")
	v.readable(c.TLS.KeyFile, "tls.key_file")

	lim := c.Limits
	if lim.AuthFailuresPerAddress < 1 {
		v.fail("must be at least 1", "limits.auth_failures_per_address")
	}
	if lim.AuthFailuresPerAccount < 1 {
		v.fail("must be at least 1", "limits.auth_failures_per_account")
	}
	if lim.AuthBlockTime.Duration <= 0 {
		v.fail("must be positive", "limits.auth_block_time")
	}
	if lim.MaxConnectionsPerAddress < 0 {
		v.fail("must not be negative (0 means no limit)", "limits.max_connections_per_address")
	}
	if lim.MaxConnections < 0 {
		v.fail("must not be negative (0 means no limit)", "limits.max_connections")
	}
	if lim.MaxConnections > 0 && lim.MaxConnectionsPerAddress > lim.MaxConnections {
		v.fail(fmt.Sprintf("max_connections_per_address (%d) must not exceed max_connections (%d)",
			lim.MaxConnectionsPerAddress, lim.MaxConnections),
			"limits.max_connections_per_address", "limits.max_connections")
	}
	if lim.SMTPIdleTimeout.Duration <= 0 {
		v.fail(`must be positive (RFC 5321 4.5.3.2.7 recommends at least "5m")`, "limits.smtp_idle_timeout")
	}
	if lim.IMAPIdleTimeout.Duration <= 0 {
		v.fail(`must be positive (RFC 3501 5.4 asks for at least "30m")`, "limits.imap_idle_timeout")
	}
	if lim.IMAPCommandTimeout.Duration <= 0 {
		v.fail(`must be positive (the default is "30s")`, "limits.imap_command_timeout")
	}
	if lim.LoginTimeout.Duration < 0 {
		v.fail(`must not be negative (the default is "1m"; 0 means no bound)`, "limits.login_timeout")
	}
	if lim.CommandsPerSecond < 0 {
		v.fail("must not be negative (0 means no limit)", "limits.commands_per_second")
	}

	q := c.EmailQueue
	switch q.RelayTLS {
	case RelayStartTLS, RelayTLS, RelayNoTLS:
	default:
		v.fail(fmt.Sprintf("%q must be one of starttls, tls, none", q.RelayTLS), "email_queue.relay_tls")
	}
	if q.Enabled {
		if q.Relay == "" {
			v.fail(`must be set to the upstream server's host:port while the queue is enabled, such as "smtp.example.net:587"`,
				"email_queue.relay", "email_queue.enabled")
		} else if host, _, err := splitHostPort(q.Relay); err != nil {
			v.fail(err.Error(), "email_queue.relay")
		} else if host == "" {
			v.fail(fmt.Sprintf("%q needs a host name", q.Relay), "email_queue.relay")
		} else if _, port, _ := splitHostPort(q.Relay); port == 0 {
			v.fail(fmt.Sprintf("%q: port 0 is no port a relay listens on; give its port number (such as 587)", q.Relay), "email_queue.relay")
		}
	}
	if q.RelayPassword != "" && q.RelayPasswordFile != "" {
		v.fail("relay_password and relay_password_file cannot both be set",
			"email_queue.relay_password", "email_queue.relay_password_file")
	}
	if q.MaxAttempts < 1 {
		v.fail("must be at least 1", "email_queue.max_attempts")
	}
	if q.DelayNoticeAfter < 0 {
		v.fail("must not be negative (0 never sends a delay notice)", "email_queue.delay_notice_after")
	}
	if q.RetryMin.Duration <= 0 {
		v.fail("must be positive", "email_queue.retry_min")
	}
	if q.RetryMax.Duration < q.RetryMin.Duration {
		v.fail(fmt.Sprintf("retry_max (%s) must not be less than retry_min (%s)", q.RetryMax, q.RetryMin),
			"email_queue.retry_max", "email_queue.retry_min")
	}
	if q.HealthCheckInterval.Duration <= 0 {
		v.fail("must be positive", "email_queue.health_check_interval")
	}
	if q.RelayAlertInterval.Duration <= 0 {
		v.fail("must be positive", "email_queue.relay_alert_interval")
	}
	if q.Retention.Duration < 0 {
		v.fail(`must not be negative ("0s" keeps sent and failed entries forever)`, "email_queue.retention")
	}

	l := c.EmailLimit
	if l.SystemLimit < 0 {
		v.fail("must not be negative (0 means no limit)", "email_limit.system_limit")
	}
	if l.UserLimit < 0 {
		v.fail("must not be negative (0 means no limit)", "email_limit.user_limit")
	}
	if l.Timezone == "" {
		v.fail(`must name a time zone such as "Local", "UTC" or "Europe/Berlin"`, "email_limit.timezone")
	} else if _, err := time.LoadLocation(l.Timezone); err != nil {
		v.fail(fmt.Sprintf("unknown time zone %q (use \"Local\", \"UTC\" or a name such as \"Europe/Berlin\")", l.Timezone),
			"email_limit.timezone")
	}

	for _, a := range c.Alerts.Admins {
		v.address(a, "alerts.admins")
	}
	v.listen(c.Metrics.Listen, "metrics.listen")
	v.listen(c.HTTP.Listen, "http.listen")
	v.listen(c.Web.Listen, "web.listen")
	v.nonEmpty(c.Control.Socket, "control.socket")
	v.distinctListeners(c)

	switch c.Log.Format {
	case "text", "json":
	default:
		v.fail(fmt.Sprintf("%q must be text or json", c.Log.Format), "log.format")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.fail(fmt.Sprintf("%q must be one of debug, info, warn, error", c.Log.Level), "log.level")
	}
	for _, a := range c.Log.TraceUsers {
		v.address(a, "log.trace_users")
	}
	return v.errs
}

// readable checks that a file the daemon will read at start exists and can
// be opened, so that `config check` fails where serve would.
func (v *validator) readable(path, key string) {
	if path == "" {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			v.fail(fmt.Sprintf("%q does not exist", path), key)
		case errors.Is(err, fs.ErrPermission):
			v.fail(fmt.Sprintf("%q cannot be read by this user (permission denied)", path), key)
		default:
			v.fail(fmt.Sprintf("%q cannot be read: %v", path, errors.Unwrap(err)), key)
		}
		return
	}
	f.Close()
}

// distinctListeners refuses two listen keys on one address: the same
// host:port, or one port where either host is a wildcard ("", 0.0.0.0,
// [::]), which binds every address. The second key in the file is named.
func (v *validator) distinctListeners(c *Config) {
	type bound struct {
		key, host string
		port      int
	}
	var seen []bound
	for _, l := range []struct{ key, addr string }{
		{"smtp.submission", c.SMTP.Submission},
		{"smtp.submissions", c.SMTP.Submissions},
		{"smtp.inbound", c.SMTP.Inbound},
		{"imap.listen", c.IMAP.Listen},
		{"imap.tls_listen", c.IMAP.TLSListen},
		{"metrics.listen", c.Metrics.Listen},
		{"http.listen", c.HTTP.Listen},
	} {
		if l.addr == "" {
			continue
		}
		host, port, err := splitHostPort(l.addr)
		if err != nil {
			continue // reported by listen
		}
		if port == 0 {
			v.fail(fmt.Sprintf("%q: port 0 would listen on a random port that no client can know; give a port number", l.addr), l.key)
			continue
		}
		for _, b := range seen {
			if b.port == port && hostsOverlap(b.host, host) {
				v.fail(fmt.Sprintf("%s %q and %s %q listen on the same address; give each its own port",
					displayKey(b.key), c.listenAddr(b.key), displayKey(l.key), l.addr), l.key, b.key)
				break
			}
		}
		seen = append(seen, bound{key: l.key, host: host, port: port})
	}
}

// listenAddr is the value of one of the listen keys, for messages.
func (c *Config) listenAddr(key string) string {
	switch key {
	case "smtp.submission":
		return c.SMTP.Submission
	case "smtp.submissions":
		return c.SMTP.Submissions
	case "smtp.inbound":
		return c.SMTP.Inbound
	case "imap.listen":
		return c.IMAP.Listen
	case "imap.tls_listen":
		return c.IMAP.TLSListen
	case "metrics.listen":
		return c.Metrics.Listen
	case "http.listen":
		return c.HTTP.Listen
	}
	return ""
}

// hostsOverlap reports whether two listen hosts can share a socket address:
// equal, or either one a wildcard, or "localhost" and a loopback address
// (the daemon binds localhost to the first of 127.0.0.1 and ::1 it
// resolves, so either may clash; no other name is resolved here).
func hostsOverlap(a, b string) bool {
	wildcard := func(h string) bool {
		ip, err := netip.ParseAddr(h)
		return h == "" || err == nil && ip.IsUnspecified()
	}
	if wildcard(a) || wildcard(b) {
		return true
	}
	localhostAndLoopback := func(name, other string) bool {
		ip, err := netip.ParseAddr(other)
		return strings.EqualFold(name, "localhost") && err == nil && ip.Unmap().IsLoopback()
	}
	if localhostAndLoopback(a, b) || localhostAndLoopback(b, a) {
		return true
	}
	ia, errA := netip.ParseAddr(a)
	ib, errB := netip.ParseAddr(b)
	if errA == nil && errB == nil {
		return ia.Unmap() == ib.Unmap()
	}
	return strings.EqualFold(a, b)
}

func (v *validator) nonEmpty(s, key string) {
	if s == "" {
		v.fail("must not be empty", key)
	}
}

// listen checks a listen address; "" (disabled) is accepted here and the
// callers decide whether everything may be disabled.
func (v *validator) listen(addr, key string) {
	if addr == "" {
		return
	}
	if _, _, err := splitHostPort(addr); err != nil {
		v.fail(err.Error(), key)
	}
}

// splitHostPort accepts "host:port", ":port" and "[::1]:port" with a
// numeric port.
func splitHostPort(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port (for example \"0.0.0.0:587\")", addr)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("%q: port %q must be a number from 1 to 65535", addr, p)
	}
	if strings.ContainsFunc(h, isSpaceOrControl) {
		return "", 0, fmt.Errorf("%q: host must not contain spaces", addr)
	}
	return h, n, nil
}

func (v *validator) address(a, key string) {
	p, err := mail.ParseAddress(a)
	if err != nil || p.Name != "" || p.Address != a || !strings.Contains(a, "@") {
		v.fail(fmt.Sprintf("%q is not an e-mail address such as \"postmaster@example.com\"", a), key)
	}
}

// validDomain reports whether d is a lower-case DNS name: dot-separated
// labels of letters, digits and hyphens, no label starting or ending with a
// hyphen (RFC 1035 section 2.3.1, RFC 1123 section 2.1).
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}
