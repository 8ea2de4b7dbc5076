package config

// Importing the legacy config.xml (SPEC.md: `pochta config import`).
//
// The seed's office suite kept its server settings in a config.xml whose
// exact shape we never saw: only that <EmailQueue> holds <Enabled> and
// <EmailLimit> holds <SystemLimit> and <UserLimit>, and that SMTP settings
// live there too. So the import matches element names, not a schema: names
// compare case-insensitively and without "_", "-" or "."; a setting is
// recognised by its own name and the nearest enclosing section it belongs
// to, wherever that section sits; attributes count like child elements
// (<Smtp host="..." port="25"/>), and so do .NET-style
// <add key="SmtpServer" value="..."/> entries. Whatever is not recognised
// is reported, one warning per element, and left out: the import never
// guesses silently.

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/BurntSushi/toml"
	"golang.org/x/text/encoding/htmlindex"
)

// maxXMLSize bounds the config.xml the import reads: the real ones are a
// few kilobytes, and anything this large is the wrong file.
const maxXMLSize = 8 << 20

// maxXMLDepth bounds element nesting. A real config.xml is four or five
// levels deep; without a bound a 200,000-deep file made the import build
// a path string per level (quadratic) and recurse that deep.
const maxXMLDepth = 64

// Import is the result of ImportXML: the translated configuration, where
// each imported key came from, and the warnings for what was left out.
type Import struct {
	// Config is Defaults overlaid with the settings found; it has passed
	// Validate.
	Config *Config
	// Sources maps each imported key ("email_limit.user_limit") to where it
	// came from ("config.xml:7 <Server/EmailLimit/UserLimit>").
	Sources map[string]string
	// Warnings are one line each, "config.xml:12: <Server/Foo> is not
	// known; ignored", in file order, followed by notes on the result.
	Warnings []string
}

// xmlNode is one element of the parsed file, with its attributes.
type xmlNode struct {
	name     string
	line     int
	attrs    []xml.Attr
	text     strings.Builder
	children []*xmlNode
}

// section is the part of config.xml a setting belongs to.
type section int

const (
	noSection section = iota
	queueSection
	limitSection
	smtpSection
)

// norm folds an element name for matching: "Email_Queue", "email-queue"
// and "EMAILQUEUE" are the same name.
func norm(name string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '_', '-', '.', ' ':
			return -1
		}
		return r
	}, strings.ToLower(name))
}

func nameSet(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

var (
	queueNames = nameSet("emailqueue", "mailqueue")
	limitNames = nameSet("emaillimit", "emaillimits", "maillimit", "maillimits")
	smtpNames  = nameSet("smtp", "smtpserver", "smtpsettings", "smtpconfig", "smtpconfiguration", "smtprelay",
		"mail", "mailserver", "mailsettings", "email", "emailserver", "emailsettings",
		"relay", "smarthost", "outgoing", "outgoingmail", "outgoingserver")
)

// The settings a section knows, by folded name. SMTP settings are also
// recognised anywhere under their "smtp"-prefixed names (flatSMTP).
var (
	queueFields = map[string]string{
		"enabled": "enabled", "enable": "enabled", "isenabled": "enabled", "active": "enabled",
		"maxattempts": "attempts", "sendattempts": "attempts", "maxsendattempts": "attempts",
	}
	limitFields = map[string]string{
		"systemlimit": "system", "userlimit": "user",
		"timezone": "timezone", "timezoneid": "timezone",
	}
	smtpFields = map[string]string{
		"host": "host", "hostname": "host", "server": "host", "servername": "host", "address": "host",
		"relay": "host", "relayhost": "host", "smtphost": "host", "smtpserver": "host", "smtpaddress": "host",
		"port": "port", "serverport": "port", "smtpport": "port",
		"user": "user", "username": "user", "userid": "user", "login": "user", "account": "user",
		"authuser": "user", "smtpuser": "user", "smtpusername": "user", "smtplogin": "user",
		"password": "password", "pass": "password", "pwd": "password", "passwd": "password",
		"authpassword": "password", "smtppassword": "password", "smtppass": "password",
		"ssl": "tls", "usessl": "tls", "enablessl": "tls", "tls": "tls", "usetls": "tls", "enabletls": "tls",
		"starttls": "tls", "usestarttls": "tls", "secure": "tls", "security": "tls", "encryption": "tls",
		"securesocketoptions": "tls", "smtpssl": "tls", "smtpusessl": "tls", "smtpenablessl": "tls",
		"smtptls": "tls", "smtpusetls": "tls", "smtpstarttls": "tls", "smtpsecurity": "tls", "smtpencryption": "tls",
	}
	flatSMTP = func() map[string]string {
		m := make(map[string]string)
		for name, field := range smtpFields {
			if strings.HasPrefix(name, "smtp") {
				m[name] = field
			}
		}
		return m
	}()
)

// found is one recognised setting: its raw text and where it stood.
type found struct {
	value string
	where string // "config.xml:7 <Server/EmailLimit/UserLimit>"
	line  int
	path  string // "<Server/EmailLimit/UserLimit>"
}

// importer walks the parsed file and collects what it recognises.
type importer struct {
	file     string
	settings map[string]*found // "queue.enabled", "smtp.host", ...
	warnings []string
	errs     []*Error
	// unknown is the warning of each unknown element path, and how many
	// more times the path came again: one line per path, not per element
	// (a file of 300,000 unknown elements gave 300,000 lines).
	unknown map[string]*repeatedWarning
}

type repeatedWarning struct {
	index, more int
}

// ImportXML translates a legacy config.xml (name is used in messages) into
// a pochta configuration: Defaults overlaid with <EmailQueue><Enabled>,
// <EmailLimit><SystemLimit>/<UserLimit> and any SMTP relay settings found.
// Unreadable XML or a recognised setting with a bad value is an error naming
// the file and line; unknown elements are warnings in the result.
func ImportXML(name string, data []byte) (*Import, error) {
	if len(data) > maxXMLSize {
		return nil, fmt.Errorf("%s: %d bytes is too large for a config.xml (at most %d)", name, len(data), maxXMLSize)
	}
	root, err := parseXML(name, data)
	if err != nil {
		return nil, err
	}
	im := &importer{file: name, settings: make(map[string]*found), unknown: make(map[string]*repeatedWarning)}
	im.walk(root, "", noSection)
	if len(im.errs) > 0 {
		return nil, joinErrors(im.errs)
	}
	result, err := im.build()
	if err != nil {
		return nil, err
	}
	if err := result.Config.Validate(); err != nil {
		return nil, fmt.Errorf("%s: the imported settings do not make a valid configuration:\n%w", name, err)
	}
	return result, nil
}

// parseXML reads the whole document into a tree, converting UTF-16 (what
// Windows tools often write) and declared legacy encodings to UTF-8.
func parseXML(name string, data []byte) (*xmlNode, error) {
	data, wasUTF16 := toUTF8(data)
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.CharsetReader = func(charset string, input io.Reader) (io.Reader, error) {
		cs := strings.ToLower(charset)
		if cs == "utf-8" || cs == "us-ascii" || wasUTF16 && strings.HasPrefix(cs, "utf-16") {
			return input, nil
		}
		enc, err := htmlindex.Get(cs)
		if err != nil {
			return nil, fmt.Errorf("encoding %q is not supported; save the file as UTF-8", charset)
		}
		return enc.NewDecoder().Reader(input), nil
	}
	var root *xmlNode
	var stack []*xmlNode
	for {
		line, _ := dec.InputPos()
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, xmlError(name, dec, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			// The whitespace before an element is a token of its own, so
			// the position read before this token is where "<" stands.
			if len(stack) >= maxXMLDepth {
				return nil, joinErrors([]*Error{{File: name, Line: line,
					Msg: fmt.Sprintf("elements nested more than %d deep; a config.xml is a few levels deep (is this the right file?)", maxXMLDepth)}})
			}
			n := &xmlNode{name: t.Name.Local, line: line, attrs: t.Attr}
			if len(stack) == 0 {
				if root != nil {
					return nil, joinErrors([]*Error{{File: name, Line: line, Msg: "invalid XML: more than one root element"}})
				}
				root = n
			} else {
				parent := stack[len(stack)-1]
				parent.children = append(parent.children, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text.Write(t)
			}
		}
	}
	if root == nil {
		return nil, joinErrors([]*Error{{File: name, Line: 1, Msg: "invalid XML: no root element (is this a config.xml?)"}})
	}
	return root, nil
}

func xmlError(name string, dec *xml.Decoder, err error) error {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return joinErrors([]*Error{{File: name, Line: se.Line, Msg: "invalid XML: " + se.Msg}})
	}
	line, _ := dec.InputPos()
	return joinErrors([]*Error{{File: name, Line: line, Msg: "invalid XML: " + err.Error()}})
}

// toUTF8 converts UTF-16 with a byte order mark to UTF-8 and drops a UTF-8
// byte order mark; encoding/xml reads only ASCII-compatible encodings.
func toUTF8(data []byte) ([]byte, bool) {
	if bytes.HasPrefix(data, []byte{0xEF, 0xBB, 0xBF}) {
		return data[3:], false
	}
	var big bool
	switch {
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE}):
	case bytes.HasPrefix(data, []byte{0xFE, 0xFF}):
		big = true
	default:
		return data, false
	}
	data = data[2:]
	units := make([]uint16, len(data)/2)
	for i := range units {
		if big {
			units[i] = uint16(data[2*i])<<8 | uint16(data[2*i+1])
		} else {
			units[i] = uint16(data[2*i+1])<<8 | uint16(data[2*i])
		}
	}
	return []byte(string(utf16.Decode(units))), true
}

// sectionOf names the section an element opens, if any.
func sectionOf(name string) section {
	n := norm(name)
	switch {
	case queueNames[n]:
		return queueSection
	case limitNames[n]:
		return limitSection
	case smtpNames[n]:
		return smtpSection
	}
	return noSection
}

// walk visits n, whose parent path is parent and whose nearest enclosing
// section is sec.
func (im *importer) walk(n *xmlNode, parent string, sec section) {
	path := n.name
	if parent != "" {
		path = parent + "/" + n.name
	}
	// <add key="SmtpServer" value="..."/>: a setting written as attributes.
	if norm(n.name) == "add" && len(n.children) == 0 {
		if key, value, ok := keyValueAttrs(n.attrs); ok {
			segs := strings.FieldsFunc(key, func(r rune) bool { return r == '.' || r == ':' || r == '/' })
			keySec := sec
			for _, s := range segs[:max(len(segs)-1, 0)] {
				if ks := sectionOf(s); ks != noSection {
					keySec = ks
				}
			}
			if len(segs) > 0 {
				im.leaf(segs[len(segs)-1], value, path+"[@key='"+key+"']", n.line, keySec)
				return
			}
		}
	}
	own := sectionOf(n.name)
	inner := sec
	if own != noSection {
		inner = own
	}
	text := strings.TrimSpace(n.text.String())
	isContainer := len(n.children) > 0 || text == "" && len(n.attrs) > 0
	if !isContainer {
		// <EmailQueue>true</EmailQueue>: a section written as one value.
		if own == queueSection {
			im.set("queue.enabled", text, path, n.line)
		} else {
			im.leaf(n.name, text, path, n.line, sec)
		}
		for _, a := range n.attrs {
			if !isXMLNamespaceAttr(a) {
				im.warnUnknown(n.line, path+"/@"+a.Name.Local)
			}
		}
		return
	}
	for _, a := range n.attrs {
		if isXMLNamespaceAttr(a) {
			continue
		}
		im.leaf(a.Name.Local, a.Value, path+"/@"+a.Name.Local, n.line, inner)
	}
	for _, c := range n.children {
		im.walk(c, path, inner)
	}
}

func keyValueAttrs(attrs []xml.Attr) (key, value string, ok bool) {
	var haveKey, haveValue bool
	for _, a := range attrs {
		switch norm(a.Name.Local) {
		case "key", "name":
			key, haveKey = a.Value, true
		case "value":
			value, haveValue = a.Value, true
		default:
			return "", "", false
		}
	}
	return key, value, haveKey && haveValue
}

// isXMLNamespaceAttr reports xmlns and xsi:... attributes, which describe
// the document, not a setting.
func isXMLNamespaceAttr(a xml.Attr) bool {
	return a.Name.Space == "xmlns" || a.Name.Local == "xmlns" ||
		a.Name.Space == "http://www.w3.org/2001/XMLSchema-instance" || a.Name.Space == "xsi"
}

// leaf records one setting named name (an element or attribute) inside
// section sec, or warns that it is not known.
func (im *importer) leaf(name, value, path string, line int, sec section) {
	n := norm(name)
	switch sec {
	case queueSection:
		if f, ok := queueFields[n]; ok {
			im.set("queue."+f, value, path, line)
			return
		}
		if f, ok := limitFields[n]; ok && f != "timezone" {
			im.set("limit."+f, value, path, line)
			return
		}
		// The queue's SMTP server may be configured inside <EmailQueue>.
		if f, ok := smtpFields[n]; ok {
			im.set("smtp."+f, value, path, line)
			return
		}
	case limitSection:
		if f, ok := limitFields[n]; ok {
			im.set("limit."+f, value, path, line)
			return
		}
	case smtpSection:
		if f, ok := smtpFields[n]; ok {
			im.set("smtp."+f, value, path, line)
			return
		}
	}
	if f, ok := flatSMTP[n]; ok {
		im.set("smtp."+f, value, path, line)
		return
	}
	im.warnUnknown(line, path)
}

func (im *importer) warnUnknown(line int, path string) {
	if w := im.unknown[path]; w != nil {
		w.more++
		return
	}
	im.unknown[path] = &repeatedWarning{index: len(im.warnings)}
	im.warnings = append(im.warnings, fmt.Sprintf("%s:%d: <%s> is not known; ignored", im.file, line, path))
}

func (im *importer) set(key, value, path string, line int) {
	// where ends up in a TOML comment, which a line break would end.
	where := strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, fmt.Sprintf("%s:%d <%s>", im.file, line, path))
	f := &found{
		value: strings.TrimSpace(value),
		where: where,
		line:  line,
		path:  "<" + path + ">",
	}
	if prev, ok := im.settings[key]; ok {
		im.warnings = append(im.warnings, fmt.Sprintf("%s:%d: <%s> sets %s again (first set at line %d); the later value is used",
			im.file, line, path, strings.ReplaceAll(key, ".", " "), prev.line))
	}
	im.settings[key] = f
}

func (im *importer) fail(f *found, msg string) {
	im.errs = append(im.errs, &Error{File: im.file, Line: f.line, Msg: f.path + ": " + msg})
}

// build overlays the collected settings on Defaults.
func (im *importer) build() (*Import, error) {
	cfg := Defaults()
	res := &Import{Config: cfg, Sources: make(map[string]string)}
	s := im.settings
	from := func(key string, f *found) { res.Sources[key] = f.where }

	if f := s["queue.enabled"]; f != nil {
		if b, ok := parseBool(f.value); ok {
			cfg.EmailQueue.Enabled = b
			from("email_queue.enabled", f)
		} else {
			im.fail(f, fmt.Sprintf("%q is not true or false", f.value))
		}
	}
	if f := s["queue.attempts"]; f != nil {
		if n, ok := im.count(f); ok {
			if n < 1 {
				im.fail(f, "must be at least 1")
			} else {
				cfg.EmailQueue.MaxAttempts = n
				from("email_queue.max_attempts", f)
			}
		}
	}
	if f := s["limit.system"]; f != nil {
		if n, ok := im.count(f); ok {
			cfg.EmailLimit.SystemLimit = n
			from("email_limit.system_limit", f)
		}
	}
	if f := s["limit.user"]; f != nil {
		if n, ok := im.count(f); ok {
			cfg.EmailLimit.UserLimit = n
			from("email_limit.user_limit", f)
		}
	}
	if f := s["limit.timezone"]; f != nil {
		cfg.EmailLimit.Timezone = f.value
		from("email_limit.timezone", f)
	}
	notes := im.relay(cfg, from)
	if len(im.errs) > 0 {
		return nil, joinErrors(im.errs)
	}
	for _, w := range im.unknown {
		if w.more > 0 {
			im.warnings[w.index] += fmt.Sprintf(" (and %d more like it)", w.more)
		}
	}
	res.Warnings = append(im.warnings, notes...)
	return res, nil
}

// relay turns the SMTP settings found into [email_queue] relay, relay_tls,
// relay_username and relay_password, and returns notes for the operator.
func (im *importer) relay(cfg *Config, from func(string, *found)) []string {
	s := im.settings
	host, portF, tlsF := s["smtp.host"], s["smtp.port"], s["smtp.tls"]
	if host == nil && portF == nil && tlsF == nil && s["smtp.user"] == nil && s["smtp.password"] == nil {
		return []string{fmt.Sprintf("%s: no SMTP relay settings found; [email_queue] relay keeps the default %q: set it before starting pochta",
			im.file, cfg.EmailQueue.Relay)}
	}
	var notes []string
	hostname, port := "", 0
	if host != nil {
		hostname = host.value
		if h, p, err := net.SplitHostPort(host.value); err == nil {
			n, perr := strconv.Atoi(p)
			if perr != nil || n < 1 || n > 65535 {
				im.fail(host, fmt.Sprintf("%q: port %q must be a number from 1 to 65535", host.value, p))
				return nil
			}
			hostname, port = h, n
		}
		if hostname == "" || strings.ContainsFunc(hostname, isSpaceOrControl) || strings.Contains(hostname, "/") {
			im.fail(host, fmt.Sprintf("%q is not a host name", host.value))
			return nil
		}
	}
	if portF != nil {
		n, err := strconv.Atoi(portF.value)
		if err != nil || n < 1 || n > 65535 {
			im.fail(portF, fmt.Sprintf("%q must be a port number from 1 to 65535", portF.value))
			return nil
		}
		port = n
	}
	mode := ""
	if tlsF != nil {
		var ok bool
		if mode, ok = relayTLSMode(tlsF.value, port); !ok {
			im.fail(tlsF, fmt.Sprintf("%q is not a TLS setting (use true or false, SSL, STARTTLS or None)", tlsF.value))
			return nil
		}
	}
	if port == 0 {
		// RFC 8314: implicit TLS submission is port 465; otherwise the
		// legacy tool's SMTP client defaulted to port 25.
		port = 25
		if mode == RelayTLS {
			port = 465
		}
	}
	if mode == "" {
		mode = RelayStartTLS
		if port == 465 {
			mode = RelayTLS
		}
	}
	if hostname == "" {
		defHost, _, _ := net.SplitHostPort(cfg.EmailQueue.Relay)
		hostname = defHost
		notes = append(notes, fmt.Sprintf("%s: SMTP settings name no host; [email_queue] relay uses the placeholder %q: set it before starting pochta",
			im.file, hostname))
	}
	cfg.EmailQueue.Relay = net.JoinHostPort(hostname, strconv.Itoa(port))
	if host != nil {
		from("email_queue.relay", host)
	} else if portF != nil {
		from("email_queue.relay", portF)
	}
	cfg.EmailQueue.RelayTLS = mode
	if tlsF != nil {
		from("email_queue.relay_tls", tlsF)
	}
	if f := s["smtp.user"]; f != nil {
		cfg.EmailQueue.RelayUsername = f.value
		from("email_queue.relay_username", f)
	}
	if f := s["smtp.password"]; f != nil {
		cfg.EmailQueue.RelayPassword = f.value
		from("email_queue.relay_password", f)
		if f.value != "" {
			notes = append(notes, fmt.Sprintf("%s:%d: the relay password is copied into the output; consider relay_password_file instead",
				im.file, f.line))
		}
	}
	if mode == RelayNoTLS && cfg.EmailQueue.RelayUsername != "" {
		notes = append(notes, fmt.Sprintf("%s:%d: SSL is off, so relay_tls = \"none\" sends the relay password unencrypted; use \"starttls\" if the relay offers it",
			im.file, tlsF.line))
	}
	return notes
}

// count parses a non-negative whole number such as a daily limit.
func (im *importer) count(f *found) (int, bool) {
	n, err := strconv.Atoi(f.value)
	if err != nil {
		im.fail(f, fmt.Sprintf("%q is not a whole number", f.value))
		return 0, false
	}
	if n < 0 {
		im.fail(f, fmt.Sprintf("%d must not be negative (0 means no limit)", n))
		return 0, false
	}
	return n, true
}

func parseBool(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "true", "yes", "on", "1", "enabled":
		return true, true
	case "false", "no", "off", "0", "disabled":
		return false, true
	}
	return false, false
}

// relayTLSMode maps a legacy TLS setting to relay_tls. A plain "on" means
// implicit TLS on port 465 and STARTTLS elsewhere: that is what .NET's
// EnableSsl and most mail libraries' "SSL" switch did.
func relayTLSMode(s string, port int) (string, bool) {
	v := norm(strings.ReplaceAll(s, "/", ""))
	byPort := func() string {
		if port == 465 {
			return RelayTLS
		}
		return RelayStartTLS
	}
	if b, ok := parseBool(v); ok {
		if b {
			return byPort(), true
		}
		return RelayNoTLS, true
	}
	switch v {
	case "ssl", "tls", "ssltls", "secure":
		return byPort(), true
	case "implicit", "implicittls", "smtps", "sslonconnect", "wrapper":
		return RelayTLS, true
	case "starttls", "explicit", "explicittls", "starttlswhenavailable", "auto":
		return RelayStartTLS, true
	case "none", "plain", "plaintext":
		return RelayNoTLS, true
	}
	return "", false
}

// WriteTOML writes the imported configuration as a complete TOML file:
// every key, imported ones marked with the element they came from.
func (im *Import) WriteTOML(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# pochta configuration imported from a legacy config.xml by `pochta config import`.\n")
	b.WriteString("# Keys marked \"from\" came from config.xml; every other key is pochta's default\n")
	b.WriteString("# (config.toml.example explains each). Review hostname, domains, data_dir and\n")
	b.WriteString("# [alerts] admins, then check the file with `pochta config check --config FILE`.\n")
	rv := reflect.ValueOf(im.Config).Elem()
	rt := rv.Type()
	// Top-level keys first: TOML puts everything after a [section] header
	// into that section.
	for pass := range 2 {
		for i := range rt.NumField() {
			tag := rt.Field(i).Tag.Get("toml")
			if tag == "" {
				continue
			}
			fv := rv.Field(i)
			isSection := fv.Kind() == reflect.Struct && fv.Type() != durationType
			if isSection != (pass == 1) {
				continue
			}
			if !isSection {
				if err := im.writeKey(&b, tag, tag, fv); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(&b, "\n[%s]\n", tag)
			st := fv.Type()
			for j := range st.NumField() {
				key := st.Field(j).Tag.Get("toml")
				if key == "" {
					continue
				}
				if err := im.writeKey(&b, key, tag+"."+key, fv.Field(j)); err != nil {
					return err
				}
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeKey writes one "key = value" line, encoded by the TOML library so
// that quoting and escapes are right.
func (im *Import) writeKey(b *strings.Builder, key, path string, v reflect.Value) error {
	out, err := toml.Marshal(map[string]any{key: v.Interface()})
	if err != nil {
		return fmt.Errorf("encoding %s: %w", displayKey(path), err)
	}
	b.WriteString(strings.TrimRight(string(out), "\n"))
	if src, ok := im.Sources[path]; ok {
		b.WriteString("  # from " + src)
	}
	b.WriteString("\n")
	return nil
}
