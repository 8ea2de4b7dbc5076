package autoconfig

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/pochta/pochta/config"
)

// testOptions uses ports no default has, so a test that passes proves the
// ports come from the listen addresses.
func testOptions() Options {
	return Options{
		Hostname:    "mx.corp.test",
		Domains:     []string{"corp.test", "corp2.test"},
		IMAP:        "0.0.0.0:1143",
		IMAPS:       "0.0.0.0:1993",
		Submission:  "[::]:1587",
		Submissions: "0.0.0.0:1465",
	}
}

func startServer(t *testing.T, o Options) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(o))
	t.Cleanup(srv.Close)
	return srv
}

// get fetches path from srv with the Host header set to host.
func get(t *testing.T, srv *httptest.Server, host, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	return do(t, req)
}

func post(t *testing.T, srv *httptest.Server, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/xml")
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") != "application/xml; charset=utf-8" {
		t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, body
}

// tbConfig is what a client reads from config-v1.1.xml; decoded
// independently of the types the handler encodes with.
type tbConfig struct {
	XMLName  xml.Name `xml:"clientConfig"`
	Version  string   `xml:"version,attr"`
	Provider struct {
		ID       string     `xml:"id,attr"`
		Domain   []string   `xml:"domain"`
		Incoming []tbServer `xml:"incomingServer"`
		Outgoing []tbServer `xml:"outgoingServer"`
	} `xml:"emailProvider"`
}

type tbServer struct {
	Type           string `xml:"type,attr"`
	Hostname       string `xml:"hostname"`
	Port           int    `xml:"port"`
	SocketType     string `xml:"socketType"`
	Authentication string `xml:"authentication"`
	Username       string `xml:"username"`
}

func parseTB(t *testing.T, body []byte) tbConfig {
	t.Helper()
	var c tbConfig
	if err := xml.Unmarshal(body, &c); err != nil {
		t.Fatalf("response is not a clientConfig: %v\n%s", err, body)
	}
	return c
}

func TestThunderbirdConfigListsIMAPAndSMTPWithTheirTLSModes(t *testing.T) {
	srv := startServer(t, testOptions())
	for _, path := range []string{
		"/mail/config-v1.1.xml?emailaddress=" + url.QueryEscape("alice@corp.test"),
		"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=" + url.QueryEscape("Bob@CORP2.test"),
	} {
		code, body := get(t, srv, "autoconfig.corp.test", path)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		c := parseTB(t, body)
		if c.Version != "1.1" || len(c.Provider.Domain) != 1 {
			t.Errorf("GET %s: version %q domains %v", path, c.Version, c.Provider.Domain)
		}
		wantIn := []tbServer{
			{"imap", "mx.corp.test", 1993, "SSL", "password-cleartext", "%EMAILADDRESS%"},
			{"imap", "mx.corp.test", 1143, "STARTTLS", "password-cleartext", "%EMAILADDRESS%"},
		}
		wantOut := []tbServer{
			{"smtp", "mx.corp.test", 1465, "SSL", "password-cleartext", "%EMAILADDRESS%"},
			{"smtp", "mx.corp.test", 1587, "STARTTLS", "password-cleartext", "%EMAILADDRESS%"},
		}
		if !equalServers(c.Provider.Incoming, wantIn) || !equalServers(c.Provider.Outgoing, wantOut) {
			t.Errorf("GET %s:\nincoming %+v\noutgoing %+v", path, c.Provider.Incoming, c.Provider.Outgoing)
		}
	}
}

func equalServers(a, b []tbServer) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestThunderbirdConfigWithoutAddressUsesTheNameAskedFor(t *testing.T) {
	srv := startServer(t, testOptions())
	for host, want := range map[string]int{
		"autoconfig.corp.test":      http.StatusOK,
		"corp2.test:8080":           http.StatusOK,
		"autoconfig.elsewhere.test": http.StatusNotFound,
		"127.0.0.1":                 http.StatusNotFound,
	} {
		code, body := get(t, srv, host, "/mail/config-v1.1.xml")
		if code != want {
			t.Errorf("Host %s: %d, want %d (%s)", host, code, want, body)
		}
		if code == http.StatusOK {
			if c := parseTB(t, body); c.Provider.ID != strings.TrimPrefix(strings.Split(host, ":")[0], "autoconfig.") {
				t.Errorf("Host %s: provider id %q", host, c.Provider.ID)
			}
		}
	}
}

func TestThunderbirdConfigRefusesForeignDomainsAndBadAddresses(t *testing.T) {
	srv := startServer(t, testOptions())
	for address, want := range map[string]int{
		"mallory@elsewhere.test": http.StatusNotFound,
		"alice@sub.corp.test":    http.StatusNotFound,
		"no-at-sign":             http.StatusBadRequest,
		"@corp.test":             http.StatusBadRequest,
		"alice@":                 http.StatusBadRequest,
	} {
		code, _ := get(t, srv, "autoconfig.corp.test", "/mail/config-v1.1.xml?emailaddress="+url.QueryEscape(address))
		if code != want {
			t.Errorf("emailaddress=%s: %d, want %d", address, code, want)
		}
	}
	if code, _ := get(t, srv, "corp.test", "/other.xml"); code != http.StatusNotFound {
		t.Errorf("unknown path: %d, want 404", code)
	}
}

const outlookRequest = `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>%s</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>`

// poxResponse is what Outlook reads, with namespaces checked.
type poxResponse struct {
	XMLName  xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response struct {
		XMLName xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
		Account struct {
			AccountType string        `xml:"AccountType"`
			Action      string        `xml:"Action"`
			Protocols   []poxProtocol `xml:"Protocol"`
		} `xml:"Account"`
	} `xml:"Response"`
}

type poxProtocol struct {
	Type         string `xml:"Type"`
	Server       string `xml:"Server"`
	Port         int    `xml:"Port"`
	LoginName    string `xml:"LoginName"`
	SPA          string `xml:"SPA"`
	SSL          string `xml:"SSL"`
	Encryption   string `xml:"Encryption"`
	AuthRequired string `xml:"AuthRequired"`
}

func parsePOX(t *testing.T, body []byte) poxResponse {
	t.Helper()
	var r poxResponse
	if err := xml.Unmarshal(body, &r); err != nil {
		t.Fatalf("response is not a POX Autodiscover response: %v\n%s", err, body)
	}
	return r
}

func TestAutodiscoverAnswersOutlookWithImplicitTLSAndTheRequestAddress(t *testing.T) {
	srv := startServer(t, testOptions())
	for _, path := range []string{"/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"} {
		code, body := post(t, srv, path, strings.Replace(outlookRequest, "%s", "Alice@corp.test", 1))
		if code != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, code, body)
		}
		r := parsePOX(t, body)
		a := r.Response.Account
		if a.AccountType != "email" || a.Action != "settings" {
			t.Errorf("account type %q action %q", a.AccountType, a.Action)
		}
		want := []poxProtocol{
			{"IMAP", "mx.corp.test", 1993, "Alice@corp.test", "off", "on", "SSL", "on"},
			{"SMTP", "mx.corp.test", 1465, "Alice@corp.test", "off", "on", "SSL", "on"},
		}
		if len(a.Protocols) != len(want) {
			t.Fatalf("protocols %+v, want %+v", a.Protocols, want)
		}
		for i := range want {
			if a.Protocols[i] != want[i] {
				t.Errorf("protocol %d = %+v, want %+v", i, a.Protocols[i], want[i])
			}
		}
	}
}

func TestAutodiscoverRefusesBadRequests(t *testing.T) {
	srv := startServer(t, testOptions())
	huge := strings.Replace(outlookRequest, "%s", "alice@corp.test"+strings.Repeat(" ", maxRequestBody), 1)
	mobile := strings.Replace(strings.Replace(outlookRequest, "%s", "alice@corp.test", 1),
		"outlook/responseschema/2006a", "mobilesync/responseschema/2006", 1)
	for name, tc := range map[string]struct {
		body string
		want int
	}{
		"not XML":          {"hello", http.StatusBadRequest},
		"truncated":        {outlookRequest[:80], http.StatusBadRequest},
		"no address":       {strings.Replace(outlookRequest, "%s", "", 1), http.StatusBadRequest},
		"not an address":   {strings.Replace(outlookRequest, "%s", "alice", 1), http.StatusBadRequest},
		"too large":        {huge, http.StatusRequestEntityTooLarge},
		"foreign domain":   {strings.Replace(outlookRequest, "%s", "mallory@elsewhere.test", 1), http.StatusNotFound},
		"ActiveSync asked": {mobile, http.StatusNotFound},
	} {
		if code, body := post(t, srv, "/autodiscover/autodiscover.xml", tc.body); code != tc.want {
			t.Errorf("%s: %d, want %d (%s)", name, code, tc.want, body)
		}
	}
	if code, _ := get(t, srv, "corp.test", "/autodiscover/autodiscover.xml"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET autodiscover: %d, want 405", code)
	}
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/mail/config-v1.1.xml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := do(t, req); code != http.StatusMethodNotAllowed {
		t.Errorf("POST autoconfig: %d, want 405", code)
	}
}

func TestDisabledListenersAreLeftOut(t *testing.T) {
	o := testOptions()
	o.IMAPS, o.Submission = "", ""
	srv := startServer(t, o)
	_, body := get(t, srv, "corp.test", "/mail/config-v1.1.xml?emailaddress=alice%40corp.test")
	c := parseTB(t, body)
	if len(c.Provider.Incoming) != 1 || c.Provider.Incoming[0].Port != 1143 || c.Provider.Incoming[0].SocketType != "STARTTLS" {
		t.Errorf("incoming %+v, want only 1143 STARTTLS", c.Provider.Incoming)
	}
	if len(c.Provider.Outgoing) != 1 || c.Provider.Outgoing[0].Port != 1465 || c.Provider.Outgoing[0].SocketType != "SSL" {
		t.Errorf("outgoing %+v, want only 1465 SSL", c.Provider.Outgoing)
	}
	_, body = post(t, srv, "/autodiscover/autodiscover.xml", strings.Replace(outlookRequest, "%s", "alice@corp.test", 1))
	p := parsePOX(t, body).Response.Account.Protocols
	if len(p) != 2 || p[0].Port != 1143 || p[0].Encryption != "TLS" || p[1].Port != 1465 || p[1].Encryption != "SSL" {
		t.Errorf("protocols %+v, want IMAP 1143 STARTTLS (TLS) and SMTP 1465 SSL", p)
	}
}

func TestFromConfigDescribesTheDefaultPorts(t *testing.T) {
	srv := startServer(t, FromConfig(config.Defaults(), nil))
	code, body := get(t, srv, "autoconfig.example.com", "/mail/config-v1.1.xml")
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	c := parseTB(t, body)
	var got []int
	for _, s := range append(c.Provider.Incoming, c.Provider.Outgoing...) {
		if s.Hostname != "mail.example.com" {
			t.Errorf("hostname %q", s.Hostname)
		}
		got = append(got, s.Port)
	}
	if want := []int{993, 143, 465, 587}; len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("ports %v, want %v", got, want)
	}
}
