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
	"net/url"
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
	Limits        Limits        `toml:"limits"`
	EmailQueue    EmailQueue    `toml:"email_queue"`
	EmailLimit    EmailLimit    `toml:"email_limit"`
	Alerts        Alerts        `toml:"alerts"`
	Metrics       Metrics       `toml:"metrics"`
	HTTP          HTTP          `toml:"http"`
	Web           Web           `toml:"web"`
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
	// Node names this process among nodes sharing one database (the
	// owner of its queue leases); "" means the host name.
	Node string `toml:"node"`
	// Quota is the bytes of mail each user may keep (IMAP QUOTA's STORAGE
	// resource, RFC 9208); 0 means no limit.
	Quota int64 `toml:"quota"`
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

// Limits is [limits]: what one client may do, the same on every SMTP and
// IMAP port. Failed logins and connections are counted across all of them.
type Limits struct {
	// AuthFailuresPerAddress failed logins from one client address (IPv6:
	// one /64) block its logins for AuthBlockTime; from the third failure on
	// each answer is slowed (0.5 s doubling, at most 5 s).
	AuthFailuresPerAddress int `toml:"auth_failures_per_address"`
	// AuthFailuresPerAccount failed logins on one account, from any
	// address, put that account under attack: its password checks are
	// paced (package abuse), failing and clean addresses on queues apart.
	AuthFailuresPerAccount int      `toml:"auth_failures_per_account"`
	AuthBlockTime          Duration `toml:"auth_block_time"`
	// MaxConnectionsPerAddress and MaxConnections bound open SMTP and IMAP
	// connections, per client address and in total; 0 means no limit.
	MaxConnectionsPerAddress int `toml:"max_connections_per_address"`
	MaxConnections           int `toml:"max_connections"`
	// SMTPIdleTimeout bounds the wait for each SMTP command (and for a
	// whole DATA); IMAPIdleTimeout the wait for the next command of a
	// logged-in IMAP client outside IDLE.
	SMTPIdleTimeout Duration `toml:"smtp_idle_timeout"`
	IMAPIdleTimeout Duration `toml:"imap_idle_timeout"`
	// IMAPCommandTimeout bounds the wait for an IMAP command before login
	// and the reading of every IMAP command once it has begun; it is not
	// extended by the client's bytes (an APPEND literal may take 5m).
	IMAPCommandTimeout Duration `toml:"imap_command_timeout"`
	// LoginTimeout bounds the time an SMTP submission or IMAP connection
	// may stay without logging in, whatever it sends meanwhile; 0 means
	// no bound.
	LoginTimeout Duration `toml:"login_timeout"`
	// CommandsPerSecond paces each submission and IMAP session's commands
	// (bursts of one second's worth); over it the server reads more slowly
	// instead of failing commands. The trusted inbound port is exempt. 0
	// means no limit.
	CommandsPerSecond int `toml:"commands_per_second"`
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
	// RelayAlertInterval is the least time between two "Mail relay is
	// down"/"back online" pairs; a relay flapping faster is logged and
	// counted instead.
	RelayAlertInterval Duration `toml:"relay_alert_interval"`
	// Retention is how long sent and failed entries (with their bodies)
	// are kept after they settle; 0 keeps them.
	Retention Duration `toml:"retention"`
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

// Web is [web]: the HTTPS web interface (queue and mail pages, JSON API)
// with the [tls] certificate; "" disables it.
type Web struct {
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
	// TraceUsers lists addresses whose protocol sessions are logged line
	// by line, credentials and message bodies masked (changeable by
	// reload).
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
		Limits: Limits{
			AuthFailuresPerAddress:   10,
			AuthFailuresPerAccount:   20,
			AuthBlockTime:            Duration{15 * time.Minute},
			MaxConnectionsPerAddress: 50,
			MaxConnections:           2000,
			SMTPIdleTimeout:          Duration{5 * time.Minute},
			IMAPIdleTimeout:          Duration{30 * time.Minute},
			IMAPCommandTimeout:       Duration{30 * time.Second},
			LoginTimeout:             Duration{time.Minute},
			CommandsPerSecond:        1000,
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
			RelayAlertInterval:  Duration{time.Hour},
			Retention:           Duration{30 * 24 * time.Hour},
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
	c.Web.Listen = "127.0.0.1:2443"
	return c
}

// DatabasePath is [message_server] database, relative to data_dir unless
// absolute: the bbolt file. It is "" when database is a PostgreSQL URL
// (see DatabaseURL), which is not a file.
func (c *Config) DatabasePath() string {
	if c.DatabaseURL() != "" {
		return ""
	}
	return c.inDataDir(c.MessageServer.Database)
}

// DatabaseURL is [message_server] database when it is a PostgreSQL URL (its
// scheme postgres:// or postgresql://, in any case), the database shared by
// several nodes (SPEC.md); "" when database names a bbolt file.
func (c *Config) DatabaseURL() string {
	if IsPostgresURL(c.MessageServer.Database) {
		return c.MessageServer.Database
	}
	return ""
}

// IsPostgresURL reports whether a [message_server] database value is a
// PostgreSQL URL rather than a file name.
func IsPostgresURL(v string) bool {
	scheme, _, ok := strings.Cut(v, "://")
	return ok && (strings.EqualFold(scheme, "postgres") || strings.EqualFold(scheme, "postgresql"))
}

// RedactedDatabase is [message_server] database fit for logs and messages:
// a URL with its password (if any) replaced by "xxxxx", a file name as
// DatabasePath gives it.
func (c *Config) RedactedDatabase() string {
	u := c.DatabaseURL()
	if u == "" {
		return c.DatabasePath()
	}
	parsed, err := url.Parse(u)
	if err != nil {
		return "(a PostgreSQL URL that does not parse)"
	}
	if q := parsed.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		parsed.RawQuery = q.Encode()
	}
	return parsed.Redacted()
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

// RelayPasswordEnv is the environment variable RelayPassword reads, so the
// relay password need not be written into the config file.
const RelayPasswordEnv = "POCHTA_RELAY_PASSWORD"

// RelayPassword returns the relay password: the contents of
// relay_password_file when it is set (without the trailing newline editors
// add), else $POCHTA_RELAY_PASSWORD when it is set and not empty, else
// relay_password. The file wins over the variable because naming a file in
// the config is the more deliberate choice; the variable wins over
// relay_password so that a config kept in version control can leave a
// placeholder there.
func (c *Config) RelayPassword() (string, error) {
	q := c.EmailQueue
	if q.RelayPasswordFile == "" {
		if p := os.Getenv(RelayPasswordEnv); p != "" {
			return p, nil
		}
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
