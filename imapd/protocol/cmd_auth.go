package protocol

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/wire"
)

// The commands of the not-authenticated state (STARTTLS, LOGIN,
// AUTHENTICATE) and ENABLE.

var errPrivacyRequired = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodePrivacyRequired,
	Text: "Use TLS (STARTTLS or the IMAPS port) before logging in",
}

func (c *Conn) handleStartTLS(cmd *command) error {
	if err := c.dec.End(); err != nil {
		return err
	}
	if !c.canStartTLS() {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "STARTTLS is not available now"}
	}
	if c.dec.Buffered() > 0 {
		// Whatever was pipelined after STARTTLS was sent in cleartext and
		// must not run as if it came over TLS.
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Nothing may follow STARTTLS before the handshake"}
	}
	if err := c.respond(func(e *wire.Encoder) {
		e.Status(cmd.tag, imap.StatusResponseTypeOK, "", "Begin TLS negotiation now")
	}); err != nil {
		return err
	}
	cmd.responded = true
	tc := tls.Server(c.NetConn(), c.srv.opts.TLSConfig)
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("STARTTLS handshake: %w", err)
	}
	tc.SetDeadline(time.Time{})
	c.encMu.Lock()
	c.mu.Lock()
	c.conn = tc
	c.mu.Unlock()
	c.encMu.Unlock()
	c.setStreams(tc)
	return nil
}

func (c *Conn) handleLogin(cmd *command) error {
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	user, err := d.AString()
	if err != nil {
		return err
	}
	if err := d.SP(); err != nil {
		return err
	}
	pass, err := d.AString()
	if err != nil {
		return err
	}
	if err := d.End(); err != nil {
		return err
	}
	return c.login(cmd, user, pass)
}

func (c *Conn) login(cmd *command, user, pass string) error {
	if !c.canAuth() {
		return errPrivacyRequired
	}
	if err := c.session.Login(user, pass); err != nil {
		return err
	}
	c.setState(imap.ConnStateAuthenticated)
	cmd.code = c.capabilityCode()
	cmd.text = "Logged in"
	return nil
}

// handleAuthenticate serves AUTHENTICATE PLAIN (RFC 4616), with the
// initial response on the command line (SASL-IR, RFC 4959) or after a
// continuation.
func (c *Conn) handleAuthenticate(cmd *command) error {
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	mech, err := d.Atom()
	if err != nil {
		return err
	}
	var resp string
	haveResp := false
	if end, err := d.AtEnd(); err != nil {
		return err
	} else if !end {
		if err := d.SP(); err != nil {
			return err
		}
		if resp, err = d.Atom(); err != nil {
			return err
		}
		haveResp = true
	}
	if err := d.End(); err != nil {
		return err
	}
	if !strings.EqualFold(mech, "PLAIN") {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Unsupported authentication mechanism; use PLAIN"}
	}
	if !c.canAuth() {
		return errPrivacyRequired
	}
	if !haveResp {
		if err := c.respond(func(e *wire.Encoder) { e.Raw("+ ").CRLF() }); err != nil {
			return err
		}
		if resp, err = d.ReadLine(); err != nil {
			return err
		}
		if resp == "*" {
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Authentication cancelled"}
		}
	}
	if resp == "=" {
		resp = "" // RFC 4959: an empty initial response
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Invalid base64 in the authentication response"}
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "PLAIN expects authzid NUL authcid NUL password"}
	}
	authz, user, pass := string(parts[0]), string(parts[1]), string(parts[2])
	if authz != "" && authz != user {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthorizationFailed,
			Text: "Logging in as another user is not supported"}
	}
	return c.login(cmd, user, pass)
}

// handleEnable turns on IMAP4rev2, UTF8=ACCEPT (RFC 5161), CONDSTORE and
// QRESYNC (RFC 7162) when they
// are advertised; anything else is ignored, as the RFC says.
func (c *Conn) handleEnable(cmd *command) error {
	d := c.dec
	var asked []string
	for {
		end, err := d.AtEnd()
		if err != nil {
			return err
		}
		if end {
			break
		}
		if err := d.SP(); err != nil {
			return err
		}
		a, err := d.Atom()
		if err != nil {
			return err
		}
		asked = append(asked, a)
	}
	if err := d.End(); err != nil {
		return err
	}
	if len(asked) == 0 {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "ENABLE needs at least one capability"}
	}
	var enabled []string
	c.mu.Lock()
	for _, a := range asked {
		for _, cp := range []imap.Cap{imap.CapIMAP4rev2, imap.CapUTF8Accept, imap.CapCondStore, imap.CapQResync} {
			if strings.EqualFold(a, string(cp)) && c.srv.opts.Caps.Has(cp) && !c.enabled.Has(cp) {
				if cp == imap.CapQResync && !c.qresyncOfferedLocked() {
					continue
				}
				c.enabled[cp] = struct{}{}
				enabled = append(enabled, string(cp))
				if cp == imap.CapQResync {
					// RFC 7162 3.2.3: QRESYNC implies CONDSTORE.
					c.enabled[imap.CapCondStore] = struct{}{}
				}
			}
		}
	}
	c.mu.Unlock()
	return c.respond(func(e *wire.Encoder) {
		e.Star().Raw("ENABLED")
		for _, a := range enabled {
			e.SP().Raw(a)
		}
		e.CRLF()
	})
}
