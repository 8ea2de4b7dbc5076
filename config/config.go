// Package config owns pochta's TOML configuration: the schema (every key of
// SPEC.md's "Configuration (TOML) — keys"), its defaults, the built-in
// development instance, where the file is looked up, and validation.
//
// What it promises:
//   - Load overlays the file on Defaults; a key absent from the file keeps
//     its default, a list given in the file replaces the default list.
//   - Unknown keys are errors, never silently ignored.
//   - Every error from Load names the file, the line and the key
//     ("pochta.toml:12: [smtp] max_recipients: must be at least 1"), and Load
//     reports all of them at once, ordered by line, joined with errors.Join.
//   - A Config returned without error has passed Validate, so the daemon can
//     use its values (addresses, CIDRs, time zone, durations) without
//     re-checking them.
package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Config is the whole configuration. Field tags are the TOML key names.
type Config struct {
	Hostname      string        `toml:"hostname"`
	Domains       []string      `toml:"domains"`
	DataDir       string        `toml:"data_dir"`
	MessageServer MessageServer `toml:"message_server"`
	SMTP          SMTP          `toml:"smtp"`
	IMAP          IMAP          `toml:"imap"`
	TLS           TLS           `toml:"tls"`
	EmailQueue    EmailQueue    `toml:"email_queue"`
	EmailLimit    EmailLimit    `toml:"email_limit"`
	Alerts        Alerts        `toml:"alerts"`
	Metrics       Metrics       `toml:"metrics"`
	HTTP          HTTP          `toml:"http"`
	Control       Control       `toml:"control"`
	Log           Log           `toml:"log"`

	// src remembers where each key came from, so that Validate can name the
	// file and line of a bad value. Nil for a Config built in code.
	src *source
}

// MessageServer is [message_server]: the database and the mail lifetime
// rules (the seed's "message server").
type MessageServer struct {
	Database        string   `toml:"database"`
	PollInterval    Duration `toml:"poll_interval"`
	MessageLifetime Duration `toml:"message_lifetime"`
}

// SMTP is [smtp]: the listeners and limits of mail submission.
type SMTP struct {
	Submission        string   `toml:"submission"`
	Submissions       string   `toml:"submissions"`
	Inbound           string   `toml:"inbound"`
	TrustedNetworks   []string `toml:"trusted_networks"`
	MaxMessageSize    int64    `toml:"max_message_size"`
	MaxRecipients     int      `toml:"max_recipients"`
	AllowInsecureAuth bool     `toml:"allow_insecure_auth"`
}

// IMAP is [imap]: the IMAP listeners.
type IMAP struct {
	Listen            string `toml:"listen"`
	TLSListen         string `toml:"tls_listen"`
	AllowInsecureAuth bool   `toml:"allow_insecure_auth"`
}

// TLS is [tls]: the server certificate. Both empty means a self-signed
// certificate kept in data_dir.
type TLS struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// EmailQueue is [email_queue]: relaying non-local mail through an upstream
// SMTP server, mirroring the legacy config.xml <EmailQueue>.
type EmailQueue struct {
	Enabled             bool     `toml:"enabled"`
	Relay               string   `toml:"relay"`
	RelayTLS            string   `toml:"relay_tls"`
	RelayUsername       string   `toml:"relay_username"`
	RelayPassword       string   `toml:"relay_password"`
	RelayPasswordFile   string   `toml:"relay_password_file"`
	MaxAttempts         int      `toml:"max_attempts"`
	DelayNoticeAfter    int      `toml:"delay_notice_after"`
	RetryMin            Duration `toml:"retry_min"`
	RetryMax            Duration `toml:"retry_max"`
	HealthCheckInterval Duration `toml:"health_check_interval"`
}

// EmailLimit is [email_limit]: daily relay limits, mirroring the legacy
// config.xml <EmailLimit>. Zero means no limit.
type EmailLimit struct {
	SystemLimit int    `toml:"system_limit"`
	UserLimit   int    `toml:"user_limit"`
	Timezone    string `toml:"timezone"`
}

// Alerts is [alerts]: who receives system alerts.
type Alerts struct {
	Admins []string `toml:"admins"`
}

// Metrics is [metrics]: the Prometheus listener; "" disables it.
type Metrics struct {
	Listen string `toml:"listen"`
}

// HTTP is [http]: the public HTTP listener (autoconfig, autodiscover); ""
// disables it.
type HTTP struct {
	Listen string `toml:"listen"`
}

// Control is [control]: the Unix socket the admin commands talk to.
type Control struct {
	Socket string `toml:"socket"`
}

// Log is [log]: log output.
type Log struct {
	Format string `toml:"format"`
	Level  string `toml:"level"`
	// TraceUsers lists addresses whose protocol sessions are logged in full.
	TraceUsers []string `toml:"trace_users"`
}

// Relay TLS modes accepted by [email_queue] relay_tls.
const (
	RelayStartTLS = "starttls"
	RelayTLS      = "tls"
	RelayNoTLS    = "none"
)

// SystemPath is where Resolve looks for the configuration when neither
// --config nor $POCHTA_CONFIG names one.
const SystemPath = "/etc/pochta/pochta.toml"

// EnvVar is the environment variable Resolve reads for the config path.
const EnvVar = "POCHTA_CONFIG"

// Defaults returns the configuration SPEC.md documents: what a production
// installation gets for every key its file leaves out.
func Defaults() *Config {
	return &Config{
		Hostname: "mail.example.com",
		Domains:  []string{"example.com"},
		DataDir:  "/var/lib/pochta",
		MessageServer: MessageServer{
			Database:        "pochta.db",
			PollInterval:    Duration{5 * time.Minute},
			MessageLifetime: Duration{7 * 24 * time.Hour},
		},
		SMTP: SMTP{
			Submission:      "0.0.0.0:587",
			Submissions:     "0.0.0.0:465",
			Inbound:         "",
			TrustedNetworks: []string{"127.0.0.1/32", "::1/128"},
			MaxMessageSize:  26214400,
			MaxRecipients:   100,
		},
		IMAP: IMAP{
			Listen:    "0.0.0.0:143",
			TLSListen: "0.0.0.0:993",
		},
		EmailQueue: EmailQueue{
			Enabled:             true,
			Relay:               "smtp.example.net:587",
			RelayTLS:            RelayStartTLS,
			MaxAttempts:         10,
			DelayNoticeAfter:    5,
			RetryMin:            Duration{5 * time.Minute},
			RetryMax:            Duration{4 * time.Hour},
			HealthCheckInterval: Duration{time.Minute},
		},
		EmailLimit: EmailLimit{
			SystemLimit: 0,
			UserLimit:   2000,
			Timezone:    "Local",
		},
		Alerts:  Alerts{Admins: []string{"postmaster@example.com"}},
		Metrics: Metrics{Listen: "127.0.0.1:9154"},
		Control: Control{Socket: "pochta.sock"},
		Log:     Log{Format: "text", Level: "info", TraceUsers: []string{}},
	}
}

// Development returns the built-in configuration used when no file exists:
// everything on loopback ports above 1024, data in ./data, a self-signed
// certificate (STARTTLS on the plain ports, implicit TLS on the others), and
// a relay address nothing listens on, so queued mail simply waits.
func Development() *Config {
	c := Defaults()
	c.Hostname = "localhost"
	c.DataDir = "./data"
	c.SMTP.Submission = "127.0.0.1:2587"
	c.SMTP.Submissions = "127.0.0.1:2465"
	c.SMTP.Inbound = "127.0.0.1:2525"
	c.IMAP.Listen = "127.0.0.1:2143"
	c.IMAP.TLSListen = "127.0.0.1:2993"
	c.EmailQueue.Relay = "127.0.0.1:2526"
	c.EmailQueue.RelayTLS = RelayNoTLS
	return c
}

// DatabasePath is [message_server] database, relative to data_dir unless
// absolute.
func (c *Config) DatabasePath() string {
	return c.inDataDir(c.MessageServer.Database)
}

// SocketPath is [control] socket, relative to data_dir unless absolute.
func (c *Config) SocketPath() string {
	return c.inDataDir(c.Control.Socket)
}

func (c *Config) inDataDir(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.DataDir, p)
}

// IsLocal reports whether domain is one of the local domains, whose mail is
// delivered here. Domains compare case-insensitively (RFC 5321 section 2.4)
// and a trailing root dot is ignored.
func (c *Config) IsLocal(domain string) bool {
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" {
		return false
	}
	for _, d := range c.Domains {
		if strings.EqualFold(d, domain) {
			return true
		}
	}
	return false
}

// Postmaster is the address system mail (alerts, delivery status
// notifications) comes from: postmaster at the first local domain.
func (c *Config) Postmaster() string {
	if len(c.Domains) == 0 {
		return "postmaster"
	}
	return "postmaster@" + c.Domains[0]
}

// RelayPassword returns the relay password: the contents of
// relay_password_file when it is set (without the trailing newline editors
// add), else relay_password.
func (c *Config) RelayPassword() (string, error) {
	q := c.EmailQueue
	if q.RelayPasswordFile == "" {
		return q.RelayPassword, nil
	}
	b, err := os.ReadFile(q.RelayPasswordFile)
	if err != nil {
		return "", fmt.Errorf("[email_queue] relay_password_file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// Location is the time zone of [email_limit] timezone, in which "the
// following day" starts. A zone that does not load (Validate rejects it)
// falls back to the local zone. The zone is looked up on every call, so
// callers on a hot path keep the result.
func (c *Config) Location() *time.Location {
	loc, err := time.LoadLocation(c.EmailLimit.Timezone)
	if err != nil {
		return time.Local
	}
	return loc
}

// TrustedPrefixes returns trusted_networks parsed. Entries that do not parse
// (Validate rejects them) are left out.
func (s SMTP) TrustedPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(s.TrustedNetworks))
	for _, n := range s.TrustedNetworks {
		if p, err := netip.ParsePrefix(n); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}
