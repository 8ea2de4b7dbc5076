// Package autoconfig owns client autoconfiguration on the public HTTP
// listener ([http] listen): what lets a person set up Thunderbird or
// Outlook by typing only an address and a password.
//
// It answers:
//   - Thunderbird's autoconfig, GET /mail/config-v1.1.xml (asked of
//     autoconfig.<domain>) and /.well-known/autoconfig/mail/config-v1.1.xml
//     (asked of <domain>): a clientConfig document listing IMAP and SMTP
//     submission, implicit TLS first (RFC 8314 section 3), then STARTTLS;
//   - Outlook's POX Autodiscover, POST /autodiscover/autodiscover.xml
//     (asked of autodiscover.<domain> and <domain>): one IMAP and one SMTP
//     Protocol element, preferring implicit TLS.
//
// What it promises: answers only for the local domains (anything else is
// 404, so the server does not describe itself for domains it does not
// serve); the host name is [hostname] and the ports are those of the
// configured listeners, a disabled listener is left out; the user name is
// always the full address; request bodies are read up to a fixed limit and
// a malformed one is 400. It holds no state and never touches the store.
package autoconfig

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/pochta/pochta/config"
)

// maxRequestBody bounds an Autodiscover request: the real ones are a few
// hundred bytes, and the listener faces the Internet.
const maxRequestBody = 64 << 10

// The Autodiscover XML namespaces (Microsoft MS-OXDSCLI).
const (
	autodiscoverResponseNS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
	outlookResponseNS      = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)

// Options say what the handler describes.
type Options struct {
	// Hostname is the name clients connect to for IMAP and SMTP.
	Hostname string
	// Domains are the local domains; requests for any other get 404.
	Domains []string
	// IMAP and IMAPS are the listen addresses of IMAP with STARTTLS and
	// with implicit TLS; "" means that listener is disabled.
	IMAP, IMAPS string
	// Submission and Submissions are the listen addresses of SMTP
	// submission with STARTTLS and with implicit TLS; "" means disabled.
	Submission, Submissions string
	// Logger receives one debug line per request; nil discards.
	Logger *slog.Logger
}

// FromConfig takes the options from the daemon's configuration.
func FromConfig(cfg *config.Config, logger *slog.Logger) Options {
	return Options{
		Hostname:    cfg.Hostname,
		Domains:     cfg.Domains,
		IMAP:        cfg.IMAP.Listen,
		IMAPS:       cfg.IMAP.TLSListen,
		Submission:  cfg.SMTP.Submission,
		Submissions: cfg.SMTP.Submissions,
		Logger:      logger,
	}
}

// endpoint is one way to reach a service.
type endpoint struct {
	port     int
	implicit bool // TLS from the first byte; otherwise STARTTLS
}

// Handler is the autoconfig http.Handler.
type Handler struct {
	hostname string
	domains  map[string]bool
	imap     []endpoint // preferred first
	smtp     []endpoint
	logger   *slog.Logger
}

// New makes the handler. Listen addresses whose port does not parse
// (config validation rejects them) are left out like disabled ones.
func New(o Options) *Handler {
	h := &Handler{
		hostname: strings.TrimSuffix(o.Hostname, "."),
		domains:  make(map[string]bool, len(o.Domains)),
		imap:     endpoints(o.IMAPS, o.IMAP),
		smtp:     endpoints(o.Submissions, o.Submission),
		logger:   o.Logger,
	}
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range o.Domains {
		h.domains[normDomain(d)] = true
	}
	return h
}

// endpoints lists the implicit-TLS listener before the STARTTLS one:
// RFC 8314 section 3 prefers implicit TLS for submission and access.
func endpoints(implicitAddr, startTLSAddr string) []endpoint {
	var out []endpoint
	if p := port(implicitAddr); p > 0 {
		out = append(out, endpoint{port: p, implicit: true})
	}
	if p := port(startTLSAddr); p > 0 {
		out = append(out, endpoint{port: p})
	}
	return out
}

func port(addr string) int {
	if addr == "" {
		return 0
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0
	}
	return n
}

func normDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch path := strings.ToLower(r.URL.Path); path {
	case "/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed: use GET", http.StatusMethodNotAllowed)
			return
		}
		h.thunderbird(w, r)
	case "/autodiscover/autodiscover.xml":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "method not allowed: Autodiscover requests are POSTed", http.StatusMethodNotAllowed)
			return
		}
		h.outlook(w, r)
	default:
		http.NotFound(w, r)
	}
}

// domainOf returns the lower-case domain of address, or "" when address
// is not local@domain.
func domainOf(address string) string {
	at := strings.LastIndexByte(address, '@')
	if at <= 0 || at == len(address)-1 || strings.ContainsFunc(address, func(r rune) bool { return r <= ' ' || r == '<' || r == '>' }) {
		return ""
	}
	return normDomain(address[at+1:])
}

// clientConfig is Thunderbird's config-v1.1.xml document.
type clientConfig struct {
	XMLName  xml.Name      `xml:"clientConfig"`
	Version  string        `xml:"version,attr"`
	Provider emailProvider `xml:"emailProvider"`
}

type emailProvider struct {
	ID               string   `xml:"id,attr"`
	Domain           string   `xml:"domain"`
	DisplayName      string   `xml:"displayName"`
	DisplayShortName string   `xml:"displayShortName"`
	Incoming         []server `xml:"incomingServer"`
	Outgoing         []server `xml:"outgoingServer"`
}

type server struct {
	Type           string `xml:"type,attr"`
	Hostname       string `xml:"hostname"`
	Port           int    `xml:"port"`
	SocketType     string `xml:"socketType"`
	Authentication string `xml:"authentication"`
	Username       string `xml:"username"`
}

func (h *Handler) thunderbird(w http.ResponseWriter, r *http.Request) {
	var domain string
	if address := r.URL.Query().Get("emailaddress"); address != "" {
		if domain = domainOf(address); domain == "" {
			http.Error(w, "emailaddress is not an address such as alice@example.com", http.StatusBadRequest)
			return
		}
	} else {
		// Without the parameter the name asked for tells the domain:
		// autoconfig.<domain> or <domain> itself.
		host := r.Host
		if hp, _, err := net.SplitHostPort(host); err == nil {
			host = hp
		}
		domain = strings.TrimPrefix(normDomain(host), "autoconfig.")
	}
	if !h.domains[domain] {
		h.logger.Debug("autoconfig for a domain not served here", "domain", domain)
		http.NotFound(w, r)
		return
	}
	h.logger.Debug("autoconfig", "client", "thunderbird", "domain", domain)
	doc := clientConfig{
		Version: "1.1",
		Provider: emailProvider{
			ID:               domain,
			Domain:           domain,
			DisplayName:      domain + " mail",
			DisplayShortName: domain,
		},
	}
	for _, ep := range h.imap {
		doc.Provider.Incoming = append(doc.Provider.Incoming, h.tbServer("imap", ep))
	}
	for _, ep := range h.smtp {
		doc.Provider.Outgoing = append(doc.Provider.Outgoing, h.tbServer("smtp", ep))
	}
	writeXML(w, r, h.logger, doc)
}

func (h *Handler) tbServer(typ string, ep endpoint) server {
	socket := "STARTTLS"
	if ep.implicit {
		socket = "SSL"
	}
	return server{
		Type:     typ,
		Hostname: h.hostname,
		Port:     ep.port,
		// TLS always protects the password; pochta takes PLAIN and
		// LOGIN, which Thunderbird calls "normal password".
		SocketType:     socket,
		Authentication: "password-cleartext",
		Username:       "%EMAILADDRESS%",
	}
}

// autodiscoverRequest is Outlook's POX request; namespaces are not checked
// because clients differ in how they write them.
type autodiscoverRequest struct {
	XMLName xml.Name `xml:"Autodiscover"`
	Request struct {
		EMailAddress             string `xml:"EMailAddress"`
		AcceptableResponseSchema string `xml:"AcceptableResponseSchema"`
	} `xml:"Request"`
}

type autodiscoverResponse struct {
	XMLName  xml.Name        `xml:"Autodiscover"`
	NS       string          `xml:"xmlns,attr"`
	Response outlookResponse `xml:"Response"`
}

type outlookResponse struct {
	NS      string         `xml:"xmlns,attr"`
	Account outlookAccount `xml:"Account"`
}

type outlookAccount struct {
	AccountType string            `xml:"AccountType"`
	Action      string            `xml:"Action"`
	Protocols   []outlookProtocol `xml:"Protocol"`
}

type outlookProtocol struct {
	Type           string `xml:"Type"`
	Server         string `xml:"Server"`
	Port           int    `xml:"Port"`
	LoginName      string `xml:"LoginName"`
	DomainRequired string `xml:"DomainRequired"`
	SPA            string `xml:"SPA"`
	SSL            string `xml:"SSL"`
	Encryption     string `xml:"Encryption"`
	AuthRequired   string `xml:"AuthRequired"`
	UsePOPAuth     string `xml:"UsePOPAuth,omitempty"`
	SMTPLast       string `xml:"SMTPLast,omitempty"`
}

func (h *Handler) outlook(w http.ResponseWriter, r *http.Request) {
	var req autodiscoverRequest
	err := xml.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody)).Decode(&req)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		http.Error(w, fmt.Sprintf("request body larger than %d bytes", maxRequestBody), http.StatusRequestEntityTooLarge)
		return
	case err != nil:
		http.Error(w, "request body is not an Autodiscover request: "+err.Error(), http.StatusBadRequest)
		return
	}
	address := strings.TrimSpace(req.Request.EMailAddress)
	domain := domainOf(address)
	if domain == "" {
		http.Error(w, "Request/EMailAddress is missing or not an address such as alice@example.com", http.StatusBadRequest)
		return
	}
	if schema := strings.TrimSpace(req.Request.AcceptableResponseSchema); schema != "" && schema != outlookResponseNS {
		// ActiveSync clients ask for the mobilesync schema: pochta has no
		// ActiveSync, and saying so sends them to their other methods.
		http.Error(w, "only the Outlook response schema "+outlookResponseNS+" is served", http.StatusNotFound)
		return
	}
	if !h.domains[domain] {
		h.logger.Debug("autodiscover for a domain not served here", "domain", domain)
		http.NotFound(w, r)
		return
	}
	h.logger.Debug("autoconfig", "client", "outlook", "domain", domain)
	account := outlookAccount{AccountType: "email", Action: "settings"}
	// Outlook uses the first Protocol of each type, so each gets one: the
	// preferred (implicit TLS) listener.
	if len(h.imap) > 0 {
		account.Protocols = append(account.Protocols, h.outlookProtocol("IMAP", h.imap[0], address))
	}
	if len(h.smtp) > 0 {
		p := h.outlookProtocol("SMTP", h.smtp[0], address)
		p.UsePOPAuth, p.SMTPLast = "off", "off"
		account.Protocols = append(account.Protocols, p)
	}
	writeXML(w, r, h.logger, autodiscoverResponse{
		NS:       autodiscoverResponseNS,
		Response: outlookResponse{NS: outlookResponseNS, Account: account},
	})
}

func (h *Handler) outlookProtocol(typ string, ep endpoint, address string) outlookProtocol {
	// MS-OXDSCLI: Encryption overrides SSL; "SSL" is TLS from the first
	// byte, "TLS" is STARTTLS.
	enc := "TLS"
	if ep.implicit {
		enc = "SSL"
	}
	return outlookProtocol{
		Type:           typ,
		Server:         h.hostname,
		Port:           ep.port,
		LoginName:      address,
		DomainRequired: "off",
		SPA:            "off", // SPA is Microsoft's NTLM login, which pochta does not offer
		SSL:            "on",
		Encryption:     enc,
		AuthRequired:   "on",
	}
}

func writeXML(w http.ResponseWriter, r *http.Request, logger *slog.Logger, doc any) {
	out, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		logger.Error("encoding an autoconfig response", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(out)+1))
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.WriteString(w, xml.Header+string(out)+"\n"); err != nil {
		logger.Debug("writing an autoconfig response", "err", err)
	}
}
