package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// writeConfig writes text to pochta.toml in a temporary directory and
// returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pochta.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// errorLines splits a joined error into its messages.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// plain drops the remembered source so configs compare by value.
func plain(c *Config) Config {
	cp := *c
	cp.src = nil
	return cp
}

func TestLoadReadsEverySection(t *testing.T) {
	// The certificate files must exist: Validate checks they can be read.
	sslDir := t.TempDir()
	for _, name := range []string{"mail.pem", "mail.key"} {
		if err := os.WriteFile(filepath.Join(sslDir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := writeConfig(t, strings.ReplaceAll(`
hostname = "mx.corp.test"
domains  = ["corp.test", "corp2.test"]
data_dir = "/srv/pochta"

[message_server]
database         = "/srv/db/mail.db"
poll_interval    = "90s"
message_lifetime = "30d"
node             = "mx-1"

[smtp]
submission          = "127.0.0.1:1587"
submissions         = ""
inbound             = "127.0.0.1:1525"
trusted_networks    = ["10.0.0.0/8"]
max_message_size    = 1048576
max_recipients      = 5
allow_insecure_auth = true

[imap]
listen              = ""
tls_listen          = "[::1]:1993"
allow_insecure_auth = true

[tls]
cert_file = "/etc/ssl/mail.pem"
key_file  = "/etc/ssl/mail.key"

[limits]
auth_failures_per_address   = 5
auth_failures_per_account   = 50
auth_block_time             = "1h"
max_connections_per_address = 0
max_connections             = 500
smtp_idle_timeout           = "10m"
imap_idle_timeout           = "45m"
commands_per_second         = 0

[email_queue]
enabled               = false
relay                 = ""
relay_tls             = "tls"
relay_username        = "pochta"
relay_password_file   = "/etc/pochta/relay.pass"
max_attempts          = 3
delay_notice_after    = 0
retry_min             = "1m"
retry_max             = "1d12h"
health_check_interval = "30s"
retention             = "90d"

[email_limit]
system_limit = 10000
user_limit   = 0
timezone     = "Europe/Berlin"

[alerts]
admins = ["ops@corp.test"]

[metrics]
listen = ""

[http]
listen = "0.0.0.0:8080"

[control]
socket = "/run/pochta/ctl.sock"

[log]
format      = "json"
level       = "debug"
trace_users = ["alice@corp.test"]
`, "/etc/ssl", sslDir))
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Config{
		Hostname: "mx.corp.test",
		Domains:  []string{"corp.test", "corp2.test"},
		DataDir:  "/srv/pochta",
		MessageServer: MessageServer{
			Database:        "/srv/db/mail.db",
			PollInterval:    Duration{90 * time.Second},
			MessageLifetime: Duration{30 * 24 * time.Hour},
			Node:            "mx-1",
		},
		SMTP: SMTP{
			Submission: "127.0.0.1:1587", Submissions: "", Inbound: "127.0.0.1:1525",
			TrustedNetworks: []string{"10.0.0.0/8"}, MaxMessageSize: 1048576, MaxRecipients: 5,
			AllowInsecureAuth: true,
		},
		IMAP: IMAP{Listen: "", TLSListen: "[::1]:1993", AllowInsecureAuth: true},
		TLS:  TLS{CertFile: filepath.Join(sslDir, "mail.pem"), KeyFile: filepath.Join(sslDir, "mail.key")},
		Limits: Limits{
			AuthFailuresPerAddress: 5, AuthFailuresPerAccount: 50, AuthBlockTime: Duration{time.Hour},
			MaxConnectionsPerAddress: 0, MaxConnections: 500,
			SMTPIdleTimeout: Duration{10 * time.Minute}, IMAPIdleTimeout: Duration{45 * time.Minute},
			IMAPCommandTimeout: Duration{30 * time.Second}, LoginTimeout: Duration{time.Minute},
			CommandsPerSecond: 0,
		},
		EmailQueue: EmailQueue{
			Enabled: false, Relay: "", RelayTLS: "tls", RelayUsername: "pochta",
			RelayPasswordFile: "/etc/pochta/relay.pass", MaxAttempts: 3, DelayNoticeAfter: 0,
			RetryMin: Duration{time.Minute}, RetryMax: Duration{36 * time.Hour},
			HealthCheckInterval: Duration{30 * time.Second},
			RelayAlertInterval:  Duration{time.Hour},
			Retention:           Duration{90 * 24 * time.Hour},
		},
		EmailLimit: EmailLimit{SystemLimit: 10000, UserLimit: 0, Timezone: "Europe/Berlin"},
		Alerts:     Alerts{Admins: []string{"ops@corp.test"}},
		Metrics:    Metrics{Listen: ""},
		HTTP:       HTTP{Listen: "0.0.0.0:8080"},
		Control:    Control{Socket: "/run/pochta/ctl.sock"},
		Log:        Log{Format: "json", Level: "debug", TraceUsers: []string{"alice@corp.test"}},
	}
	if got := plain(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("Load:\n got %+v\nwant %+v", got, want)
	}
	if got := cfg.DatabasePath(); got != "/srv/db/mail.db" {
		t.Errorf("DatabasePath = %q, want the absolute database path unchanged", got)
	}
	if got := cfg.SocketPath(); got != "/run/pochta/ctl.sock" {
		t.Errorf("SocketPath = %q, want the absolute socket path unchanged", got)
	}
	if got := cfg.Location().String(); got != "Europe/Berlin" {
		t.Errorf("Location = %q, want Europe/Berlin", got)
	}
}

func TestLoadKeepsDefaultsForAbsentKeys(t *testing.T) {
	cfg, err := Load(writeConfig(t, "hostname = \"mx.example.org\"\n[smtp]\nmax_recipients = 7\n"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := plain(Defaults())
	want.Hostname = "mx.example.org"
	want.SMTP.MaxRecipients = 7
	if got := plain(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("Load:\n got %+v\nwant %+v", got, want)
	}
}

func TestLoadRejectsUnknownKeyNamingItsLine(t *testing.T) {
	path := writeConfig(t, "hostname = \"mx.example.org\"\n\n[imap]\nlistn = \":143\"\n")
	_, err := Load(path)
	want := path + `:4: unknown key "imap.listn" (did you mean "imap.listen"?)`
	if err == nil || err.Error() != want {
		t.Fatalf("Load error = %v, want %q", err, want)
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.Line != 4 || ce.Key != "imap.listn" || ce.File != path {
		t.Errorf("error as *Error = %+v, want file %s line 4 key imap.listn", ce, path)
	}
}

func TestLoadRejectsUnknownSectionOnceAtItsHeader(t *testing.T) {
	path := writeConfig(t, "[smtp]\nmax_recipients = 5\n\n[queue]\nenabled = true\nrelay = \"x:25\"\n")
	_, err := Load(path)
	want := []string{path + `:4: unknown key "queue"`}
	if got := errorLines(err); !reflect.DeepEqual(got, want) {
		t.Errorf("Load errors = %q, want %q", got, want)
	}
}

func TestLoadBadValueNamesFileLineAndKey(t *testing.T) {
	path := writeConfig(t, "# comment\n[smtp]\nsubmission = \"0.0.0.0:587\"\n\nmax_recipients = 0\n")
	_, err := Load(path)
	want := path + ":5: [smtp] max_recipients: must be at least 1"
	if err == nil || err.Error() != want {
		t.Fatalf("Load error = %v, want %q", err, want)
	}
}

func TestLoadWrongTypeNamesFileLineAndKey(t *testing.T) {
	path := writeConfig(t, "[smtp]\nmax_message_size = \"25MB\"\n[message_server]\npoll_interval = 300\n")
	_, err := Load(path)
	want := []string{
		path + ":2: [smtp] max_message_size: must be a whole number, not a string",
		path + `:4: [message_server] poll_interval: must be a duration in quotes such as "5m" or "7d", not an integer`,
	}
	if got := errorLines(err); !reflect.DeepEqual(got, want) {
		t.Errorf("Load errors:\n got %q\nwant %q", got, want)
	}
}

func TestLoadReportsEveryErrorInLineOrder(t *testing.T) {
	path := writeConfig(t, `hostname = "mx.example.org"
domains = ["Example.com"]

[email_queue]
relay_password      = "secret"
relay_tls           = "ssl"
retry_min           = "5h"
relay_password_file = "/etc/pochta/relay.pass"

[smtp]
trusted_networks = ["10.0.0.1"]
max_recipients = 0
colour = "blue"

[message_server]
message_lifetime = "a week"

[email_limit]
timezone = "Mars/Olympus_Mons"
`)
	_, err := Load(path)
	want := []string{
		path + `:2: domains: "Example.com" must be written in lower case ("example.com")`,
		path + `:6: [email_queue] relay_tls: "ssl" must be one of starttls, tls, none`,
		// retry_max keeps its default of 4h, so the line to fix is retry_min's.
		path + `:7: [email_queue] retry_min: retry_max (4h) must not be less than retry_min (5h)`,
		path + `:8: [email_queue] relay_password_file: relay_password and relay_password_file cannot both be set`,
		path + `:11: [smtp] trusted_networks: "10.0.0.1" is not a network in CIDR notation (write "10.0.0.1/32")`,
		path + `:12: [smtp] max_recipients: must be at least 1`,
		path + `:13: unknown key "smtp.colour"`,
		path + `:16: [message_server] message_lifetime: invalid duration "a week": write a duration such as "90s", "5m", "4h" or "7d"`,
		path + `:19: [email_limit] timezone: unknown time zone "Mars/Olympus_Mons" (use "Local", "UTC" or a name such as "Europe/Berlin")`,
	}
	if got := errorLines(err); !reflect.DeepEqual(got, want) {
		t.Errorf("Load errors:\n got %q\nwant %q", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok || len(joined.Unwrap()) != len(want) {
		t.Errorf("Load error does not unwrap into %d errors: %#v", len(want), err)
	}
}

func TestLoadDisablingAllListenersOfAProtocolIsAnError(t *testing.T) {
	path := writeConfig(t, "[smtp]\nsubmission = \"\"\nsubmissions = \"\"\n[imap]\ntls_listen = \"\"\nlisten = \"\"\n")
	_, err := Load(path)
	want := []string{
		path + ":3: [smtp] submissions: submission and submissions cannot both be empty: users would have no way to send mail",
		path + ":6: [imap] listen: listen and tls_listen cannot both be empty: users would have no way to read mail",
	}
	if got := errorLines(err); !reflect.DeepEqual(got, want) {
		t.Errorf("Load errors:\n got %q\nwant %q", got, want)
	}
}

func TestLoadSyntaxErrorNamesItsLine(t *testing.T) {
	path := writeConfig(t, "hostname = \"mx.example.org\"\n[smtp\nmax_recipients = 5\n")
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: invalid TOML: ") {
		t.Fatalf("Load error = %v, want it to start with %q", err, path+":2: invalid TOML: ")
	}
	path = writeConfig(t, "hostname = \"a.example\"\nhostname = \"b.example\"\n")
	_, err = Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: hostname: invalid TOML: ") {
		t.Fatalf("Load error = %v, want it to start with %q", err, path+":2: hostname: invalid TOML: ")
	}
}

func TestLoadPointsIntoInlineTablesAndDottedKeys(t *testing.T) {
	path := writeConfig(t, "hostname = \"mx.example.org\"\nsmtp = { max_recipients = 0 }\nlog.level = \"loud\"\n")
	_, err := Load(path)
	want := []string{
		path + ":2: [smtp] max_recipients: must be at least 1",
		path + `:3: [log] level: "loud" must be one of debug, info, warn, error`,
	}
	if got := errorLines(err); !reflect.DeepEqual(got, want) {
		t.Errorf("Load errors:\n got %q\nwant %q", got, want)
	}
}

func TestLoadMissingFileNamesIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.toml")
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want a not-exist error naming %s", err, path)
	}
}

func TestValidateWithoutFileNamesTheKey(t *testing.T) {
	cfg := Defaults()
	cfg.SMTP.MaxRecipients = 0
	cfg.Log.Format = "xml"
	want := []string{
		"[smtp] max_recipients: must be at least 1",
		`[log] format: "xml" must be text or json`,
	}
	if got := errorLines(cfg.Validate()); !reflect.DeepEqual(got, want) {
		t.Errorf("Validate:\n got %q\nwant %q", got, want)
	}
}

func TestValidateChecksEachRule(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"empty hostname", func(c *Config) { c.Hostname = "" }, "hostname: must not be empty"},
		{"no domains", func(c *Config) { c.Domains = nil }, "domains: must list at least one local domain"},
		{"bad domain", func(c *Config) { c.Domains = []string{"-x.example"} }, `domains: "-x.example" is not a valid domain name`},
		{"duplicate domain", func(c *Config) { c.Domains = []string{"a.example", "a.example"} }, `domains: "a.example" is listed twice`},
		{"zero poll", func(c *Config) { c.MessageServer.PollInterval = Duration{} }, "[message_server] poll_interval: must be positive"},
		{"negative lifetime", func(c *Config) { c.MessageServer.MessageLifetime = Duration{-time.Hour} }, "[message_server] message_lifetime: must not be negative"},
		{"negative quota", func(c *Config) { c.MessageServer.Quota = -1 }, "[message_server] quota: must not be negative"},
		{"bad port", func(c *Config) { c.SMTP.Inbound = "127.0.0.1:99999" }, `[smtp] inbound: "127.0.0.1:99999": port "99999" must be a number`},
		{"no port", func(c *Config) { c.Metrics.Listen = "localhost" }, `[metrics] listen: "localhost" is not host:port`},
		{"tiny messages", func(c *Config) { c.SMTP.MaxMessageSize = 1000 }, "[smtp] max_message_size: must be at least 1024"},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "config_test.go" }, "[tls] cert_file: cert_file and key_file must be set together"},
		{"missing cert", func(c *Config) { c.TLS.CertFile, c.TLS.KeyFile = "no-such.pem", "config_test.go" }, `[tls] cert_file: "no-such.pem" does not exist`},
		{"missing key", func(c *Config) { c.TLS.CertFile, c.TLS.KeyFile = "config_test.go", "no-such.key" }, `[tls] key_file: "no-such.key" does not exist`},
		{"port 0", func(c *Config) { c.SMTP.Inbound = "127.0.0.1:0" }, `[smtp] inbound: "127.0.0.1:0": port 0 would listen on a random port`},
		{"two listeners on one port", func(c *Config) { c.Metrics.Listen = c.IMAP.Listen },
			`[metrics] listen: [imap] listen "0.0.0.0:143" and [metrics] listen "0.0.0.0:143" listen on the same address`},
		{"localhost is a loopback address", func(c *Config) { c.SMTP.Submission, c.SMTP.Submissions = "127.0.0.1:2587", "localhost:2587" },
			`[smtp] submissions: [smtp] submission "127.0.0.1:2587" and [smtp] submissions "localhost:2587" listen on the same address`},
		{"localhost is ::1 too", func(c *Config) { c.IMAP.Listen, c.IMAP.TLSListen = "LOCALHOST:2143", "[::1]:2143" },
			`[imap] tls_listen: [imap] listen "LOCALHOST:2143" and [imap] tls_listen "[::1]:2143" listen on the same address`},
		{"bad port says which numbers", func(c *Config) { c.SMTP.Inbound = "127.0.0.1:65536" }, `[smtp] inbound: "127.0.0.1:65536": port "65536" must be a number from 1 to 65535`},
		{"relay port 0", func(c *Config) { c.EmailQueue.Enabled, c.EmailQueue.Relay = true, "smtp.example.net:0" }, `[email_queue] relay: "smtp.example.net:0": port 0 is no port a relay listens on`},
		{"wildcard overlaps every address", func(c *Config) { c.HTTP.Listen = "127.0.0.1:587" },
			`[http] listen: [smtp] submission "0.0.0.0:587" and [http] listen "127.0.0.1:587" listen on the same address`},
		{"no login failures", func(c *Config) { c.Limits.AuthFailuresPerAddress = 0 }, "[limits] auth_failures_per_address: must be at least 1"},
		{"no account failures", func(c *Config) { c.Limits.AuthFailuresPerAccount = 0 }, "[limits] auth_failures_per_account: must be at least 1"},
		{"zero block", func(c *Config) { c.Limits.AuthBlockTime = Duration{} }, "[limits] auth_block_time: must be positive"},
		{"negative connections", func(c *Config) { c.Limits.MaxConnections = -1 }, "[limits] max_connections: must not be negative"},
		{"per address over total", func(c *Config) { c.Limits.MaxConnectionsPerAddress = 3000 },
			"[limits] max_connections_per_address: max_connections_per_address (3000) must not exceed max_connections (2000)"},
		{"zero smtp idle", func(c *Config) { c.Limits.SMTPIdleTimeout = Duration{} }, "[limits] smtp_idle_timeout: must be positive"},
		{"zero imap command timeout", func(c *Config) { c.Limits.IMAPCommandTimeout = Duration{} }, "[limits] imap_command_timeout: must be positive"},
		{"negative login timeout", func(c *Config) { c.Limits.LoginTimeout = Duration{-time.Second} }, "[limits] login_timeout: must not be negative"},
		{"zero imap idle", func(c *Config) { c.Limits.IMAPIdleTimeout = Duration{} }, "[limits] imap_idle_timeout: must be positive"},
		{"negative rate", func(c *Config) { c.Limits.CommandsPerSecond = -1 }, "[limits] commands_per_second: must not be negative"},
		{"relay without port", func(c *Config) { c.EmailQueue.Relay = "smtp.example.net" }, `[email_queue] relay: "smtp.example.net" is not host:port`},
		{"relay without host", func(c *Config) { c.EmailQueue.Relay = ":25" }, `[email_queue] relay: ":25" needs a host name`},
		{"no attempts", func(c *Config) { c.EmailQueue.MaxAttempts = 0 }, "[email_queue] max_attempts: must be at least 1"},
		{"negative notice", func(c *Config) { c.EmailQueue.DelayNoticeAfter = -1 }, "[email_queue] delay_notice_after: must not be negative"},
		{"zero retry", func(c *Config) { c.EmailQueue.RetryMin = Duration{} }, "[email_queue] retry_min: must be positive"},
		{"zero health", func(c *Config) { c.EmailQueue.HealthCheckInterval = Duration{} }, "[email_queue] health_check_interval: must be positive"},
		{"negative retention", func(c *Config) { c.EmailQueue.Retention = Duration{-time.Hour} }, "[email_queue] retention: must not be negative"},
		{"node with a space", func(c *Config) { c.MessageServer.Node = "mx 1" }, `[message_server] node: "mx 1" is not a node name`},
		{"unknown database scheme", func(c *Config) { c.MessageServer.Database = "mysql://db/mail" }, `[message_server] database: mysql:// is not a database pochta knows`},
		{"bad postgres url", func(c *Config) { c.MessageServer.Database = "postgres://u:se%cret@db/mail" }, `[message_server] database: is not a valid PostgreSQL URL`},
		{"negative limit", func(c *Config) { c.EmailLimit.UserLimit = -1 }, "[email_limit] user_limit: must not be negative"},
		{"empty timezone", func(c *Config) { c.EmailLimit.Timezone = "" }, "[email_limit] timezone: must name a time zone"},
		{"admin with name", func(c *Config) { c.Alerts.Admins = []string{"Postmaster <pm@example.com>"} }, `[alerts] admins: "Postmaster <pm@example.com>" is not an e-mail address`},
		{"trace user", func(c *Config) { c.Log.TraceUsers = []string{"alice"} }, `[log] trace_users: "alice" is not an e-mail address`},
		{"bad level", func(c *Config) { c.Log.Level = "trace" }, `[log] level: "trace" must be one of debug, info, warn, error`},
		{"empty socket", func(c *Config) { c.Control.Socket = "" }, "[control] socket: must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Defaults()
			tt.change(cfg)
			err := cfg.Validate()
			if got := errorLines(err); len(got) != 1 || !strings.HasPrefix(got[0], tt.want) {
				t.Errorf("Validate = %q, want one error starting %q", got, tt.want)
			}
		})
	}
}

func TestValidateIgnoresRelayWhenQueueDisabled(t *testing.T) {
	cfg := Defaults()
	cfg.EmailQueue.Enabled = false
	cfg.EmailQueue.Relay = ""
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate = %v, want nil: an unused relay need not be set", err)
	}
	cfg.EmailQueue.Enabled = true
	if err := cfg.Validate(); err == nil {
		t.Error("Validate = nil, want an error: an enabled queue needs a relay")
	}
}

func TestDefaultsAndDevelopmentAreValid(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Errorf("Defaults().Validate() = %v", err)
	}
	dev := Development()
	if err := dev.Validate(); err != nil {
		t.Errorf("Development().Validate() = %v", err)
	}
	for name, addr := range map[string]string{
		"submission": dev.SMTP.Submission, "submissions": dev.SMTP.Submissions, "inbound": dev.SMTP.Inbound,
		"imap": dev.IMAP.Listen, "imaps": dev.IMAP.TLSListen, "metrics": dev.Metrics.Listen, "relay": dev.EmailQueue.Relay,
	} {
		if !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("development %s = %q, want a loopback address", name, addr)
		}
	}
	if dev.SMTP.AllowInsecureAuth || dev.IMAP.AllowInsecureAuth {
		t.Error("development allows AUTH without TLS; it has a self-signed certificate instead")
	}
	if got := dev.DatabasePath(); got != filepath.Join("data", "pochta.db") {
		t.Errorf("development DatabasePath = %q, want data/pochta.db", got)
	}
	if got := dev.SocketPath(); got != filepath.Join("data", "pochta.sock") {
		t.Errorf("development SocketPath = %q, want data/pochta.sock", got)
	}
}

func TestExampleConfigIsTheDefaults(t *testing.T) {
	cfg, err := Load("../config.toml.example")
	if err != nil {
		t.Fatalf("Load(config.toml.example): %v", err)
	}
	if got, want := plain(cfg), plain(Defaults()); !reflect.DeepEqual(got, want) {
		t.Errorf("config.toml.example differs from Defaults():\n got %+v\nwant %+v", got, want)
	}
}

func TestExampleConfigDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../config.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	lines := keyLines(string(data))
	for section, fields := range sectionFields {
		for key := range fields {
			path := key
			if section != "" {
				path = section + "." + key
			}
			if _, ok := lines[path]; !ok {
				t.Errorf("config.toml.example does not document %s", displayKey(path))
			}
		}
	}
}

func TestEncodedDefaultsLoadBackUnchanged(t *testing.T) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(Defaults()); err != nil {
		t.Fatalf("encoding: %v", err)
	}
	if !strings.Contains(buf.String(), `message_lifetime = "7d"`) {
		t.Errorf("encoded config does not write durations readably:\n%s", buf.String())
	}
	cfg, err := Parse("encoded.toml", buf.Bytes())
	if err != nil {
		t.Fatalf("Parse(encoded defaults): %v\n%s", err, buf.String())
	}
	if got, want := plain(cfg), plain(Defaults()); !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

func TestResolveLooksUpFlagThenEnvironmentThenSystemFile(t *testing.T) {
	flagFile := writeConfig(t, "hostname = \"flag.example\"\n")
	envFile := writeConfig(t, "hostname = \"env.example\"\n")
	sysFile := writeConfig(t, "hostname = \"system.example\"\n")
	old := systemPath
	t.Cleanup(func() { systemPath = old })
	systemPath = sysFile

	t.Setenv(EnvVar, envFile)
	cfg, path, err := Resolve(flagFile)
	if err != nil || path != flagFile || cfg.Hostname != "flag.example" {
		t.Errorf("Resolve(flag) = %v, %q, %v; want the flag's file", cfg, path, err)
	}
	cfg, path, err = Resolve("")
	if err != nil || path != envFile || cfg.Hostname != "env.example" {
		t.Errorf("Resolve with $%s = %v, %q, %v; want the environment's file", EnvVar, cfg, path, err)
	}
	t.Setenv(EnvVar, "")
	cfg, path, err = Resolve("")
	if err != nil || path != sysFile || cfg.Hostname != "system.example" {
		t.Errorf("Resolve with a system file = %v, %q, %v; want the system file", cfg, path, err)
	}
	systemPath = filepath.Join(t.TempDir(), "absent.toml")
	cfg, path, err = Resolve("")
	if err != nil || path != "" || !reflect.DeepEqual(plain(cfg), plain(Development())) {
		t.Errorf("Resolve with no file = %+v, %q, %v; want Development() and no path", cfg, path, err)
	}
}

func TestResolveNamedButMissingFileIsAnError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "typo.toml")
	t.Setenv(EnvVar, missing)
	if _, _, err := Resolve(""); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Resolve($%s missing) error = %v, want an error naming %s", EnvVar, err, missing)
	}
}

func TestIsLocalIgnoresCaseAndRootDot(t *testing.T) {
	cfg := Defaults()
	cfg.Domains = []string{"example.com", "example.org"}
	for domain, want := range map[string]bool{
		"example.com": true, "EXAMPLE.org": true, "example.com.": true,
		"mail.example.com": false, "example.net": false, "": false,
	} {
		if got := cfg.IsLocal(domain); got != want {
			t.Errorf("IsLocal(%q) = %v, want %v", domain, got, want)
		}
	}
	if got := cfg.Postmaster(); got != "postmaster@example.com" {
		t.Errorf("Postmaster = %q, want postmaster@example.com", got)
	}
}

func TestRelayPasswordReadsTheFileWithoutItsNewline(t *testing.T) {
	t.Setenv(RelayPasswordEnv, "")
	cfg := Defaults()
	cfg.EmailQueue.RelayPassword = "inline"
	if got, err := cfg.RelayPassword(); err != nil || got != "inline" {
		t.Errorf("RelayPassword = %q, %v; want the inline password", got, err)
	}
	file := filepath.Join(t.TempDir(), "relay.pass")
	if err := os.WriteFile(file, []byte("s3cret \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.EmailQueue.RelayPassword = ""
	cfg.EmailQueue.RelayPasswordFile = file
	if got, err := cfg.RelayPassword(); err != nil || got != "s3cret " {
		t.Errorf("RelayPassword = %q, %v; want the file's first line", got, err)
	}
	cfg.EmailQueue.RelayPasswordFile = file + ".missing"
	if _, err := cfg.RelayPassword(); err == nil || !strings.Contains(err.Error(), "relay_password_file") {
		t.Errorf("RelayPassword(missing file) error = %v, want one naming relay_password_file", err)
	}
}

func TestRelayPasswordFromTheEnvironment(t *testing.T) {
	t.Setenv(RelayPasswordEnv, "from-env")
	cfg := Defaults()
	cfg.EmailQueue.RelayPassword = "placeholder"
	if got, err := cfg.RelayPassword(); err != nil || got != "from-env" {
		t.Errorf("RelayPassword = %q, %v; want $%s over relay_password", got, err, RelayPasswordEnv)
	}
	file := filepath.Join(t.TempDir(), "relay.pass")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.EmailQueue.RelayPassword = ""
	cfg.EmailQueue.RelayPasswordFile = file
	if got, err := cfg.RelayPassword(); err != nil || got != "from-file" {
		t.Errorf("RelayPassword = %q, %v; want relay_password_file over $%s", got, err, RelayPasswordEnv)
	}
}

func TestTrustedPrefixesParseTheNetworks(t *testing.T) {
	s := SMTP{TrustedNetworks: []string{"127.0.0.1/32", "10.1.2.3/8", "::1/128"}}
	var got []string
	for _, p := range s.TrustedPrefixes() {
		got = append(got, p.String())
	}
	want := []string{"127.0.0.1/32", "10.0.0.0/8", "::1/128"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("TrustedPrefixes = %v, want %v", got, want)
	}
}

func TestConfigCheckNamesTheLineOfASecondListenerOnOneAddress(t *testing.T) {
	path := writeConfig(t, "[smtp]\nsubmission = \"127.0.0.1:2587\"\n\n[imap]\nlisten = \"127.0.0.1:2143\"\n\n[metrics]\nlisten = \"[::]:2587\"\n")
	_, err := Load(path)
	want := path + `:8: [metrics] listen: [smtp] submission "127.0.0.1:2587" and [metrics] listen "[::]:2587" listen on the same address; give each its own port`
	if got := errorLines(err); len(got) != 1 || got[0] != want {
		t.Fatalf("Load = %q\nwant %q", got, want)
	}
	// Different hosts on one port do not overlap.
	path = writeConfig(t, "[imap]\nlisten = \"127.0.0.1:2143\"\n[metrics]\nlisten = \"127.0.0.2:2143\"\n")
	if _, err := Load(path); err != nil {
		t.Fatalf("distinct addresses refused: %v", err)
	}
}

// A postgres:// value of [message_server] database is a URL, not a file in
// data_dir; anything else stays a bbolt file. Messages never show the
// URL's password.
func TestDatabaseURLIsNotAFile(t *testing.T) {
	path := writeConfig(t, `data_dir = "/var/lib/pochta"
[message_server]
database = "postgres://pochta:s3cret@db.example.org:5432/mail?sslmode=verify-full"
node = "mx1"
`)
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := cfg.DatabaseURL(); got != "postgres://pochta:s3cret@db.example.org:5432/mail?sslmode=verify-full" {
		t.Errorf("DatabaseURL = %q", got)
	}
	if got := cfg.DatabasePath(); got != "" {
		t.Errorf("DatabasePath = %q for a URL, want \"\" (it is not a file)", got)
	}
	if got := cfg.RedactedDatabase(); strings.Contains(got, "s3cret") || !strings.Contains(got, "db.example.org") {
		t.Errorf("RedactedDatabase = %q, want the server without the password", got)
	}
	if cfg.MessageServer.Node != "mx1" {
		t.Errorf("node = %q", cfg.MessageServer.Node)
	}
	for v, isURL := range map[string]bool{
		"postgresql://db/mail":          true,
		"POSTGRES://db/mail":            true,
		"postgres:///mail?host=/run/pg": true,
		"pochta.db":                     false,
		"/srv/postgres/pochta.db":       false,
		"postgres.db":                   false,
	} {
		c := Defaults()
		c.MessageServer.Database = v
		if got := c.DatabaseURL() != ""; got != isURL {
			t.Errorf("%q: URL %v, want %v", v, got, isURL)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%q: Validate = %v", v, err)
		}
	}
	c := Defaults()
	c.MessageServer.Database = "postgres://u:pw@db/mail?password=pw2"
	if got := c.RedactedDatabase(); strings.Contains(got, "pw") {
		t.Errorf("RedactedDatabase = %q shows a password", got)
	}
}
