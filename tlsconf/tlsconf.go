// Package tlsconf owns the server's TLS certificate: loading the operator's
// cert_file/key_file, or, when both are empty, creating a self-signed
// certificate once in data_dir and reusing it on every later start, so
// clients that were told to trust it keep trusting it.
//
// The tls.Config it hands out picks the certificate per handshake
// (GetCertificate), so Reload swaps the certificate for new connections
// without restarting listeners.
package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Names of the self-signed certificate and key inside data_dir.
const (
	SelfSignedCert = "tls-cert.pem"
	SelfSignedKey  = "tls-key.pem"
)

// selfSignedValidity is about ten years: long enough that a development or
// small installation never meets an expiry it did not choose.
const selfSignedValidity = 10 * 365 * 24 * time.Hour

// Manager holds the current certificate and hands out tls.Configs that use
// it. It is safe for concurrent use.
type Manager struct {
	certFile, keyFile string
	selfSigned        bool
	hostname          string
	cert              atomic.Pointer[tls.Certificate]
}

// Load returns a Manager for the configured certificate. With certFile and
// keyFile set it loads them; with both empty it uses the self-signed
// certificate in dataDir, creating it for hostname (and localhost,
// 127.0.0.1, ::1) when it is missing, expired or made for another hostname.
func Load(certFile, keyFile, dataDir, hostname string) (*Manager, error) {
	m := &Manager{certFile: certFile, keyFile: keyFile, hostname: hostname}
	switch {
	case certFile != "" && keyFile != "":
	case certFile == "" && keyFile == "":
		m.selfSigned = true
		m.certFile = filepath.Join(dataDir, SelfSignedCert)
		m.keyFile = filepath.Join(dataDir, SelfSignedKey)
		if err := ensureSelfSigned(dataDir, m.certFile, m.keyFile, hostname); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("tls: cert_file and key_file must be set together (leave both empty for a self-signed certificate)")
	}
	if err := m.Reload(); err != nil {
		return nil, err
	}
	return m, nil
}

// Reload reads the certificate files again; connections from then on get
// the new certificate. On error the current certificate stays in use.
func (m *Manager) Reload() error {
	cert, err := loadPair(m.certFile, m.keyFile)
	if err != nil {
		return err
	}
	if time.Now().After(cert.Leaf.NotAfter) {
		slog.Warn("TLS certificate has expired; clients will refuse it",
			"cert_file", m.certFile, "not_after", cert.Leaf.NotAfter)
	}
	m.cert.Store(cert)
	return nil
}

// TLSConfig returns a server tls.Config using the current certificate.
// Each call returns a new tls.Config the caller may adjust.
// TLS 1.2 is offered with forward-secret AEAD suites only (ECDHE with
// AES-GCM or ChaCha20-Poly1305, as Mozilla's "intermediate" profile); TLS
// 1.3 suites are not configurable in Go and are all AEAD with ECDHE.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: TLS12CipherSuites(),
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return m.cert.Load(), nil
		},
	}
}

// TLS12CipherSuites are the suites offered to TLS 1.2 clients: ECDHE key
// exchange (forward secrecy) with an AEAD cipher. No CBC, no SHA-1 MAC, no
// RSA key exchange.
func TLS12CipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// Certificate returns the certificate currently in use; its Leaf is set.
func (m *Manager) Certificate() *tls.Certificate {
	return m.cert.Load()
}

// CertFile is the path of the certificate in use: cert_file, or the
// self-signed one in data_dir.
func (m *Manager) CertFile() string {
	return m.certFile
}

// SelfSigned reports whether the certificate is the generated self-signed
// one.
func (m *Manager) SelfSigned() bool {
	return m.selfSigned
}

// loadPair reads and matches a certificate and key, naming the file at
// fault.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tls: reading cert_file: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: reading key_file: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate %s with key %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls: certificate %s: %w", certFile, err)
		}
	}
	return &cert, nil
}

// ensureSelfSigned makes sure a usable self-signed certificate for hostname
// exists at certFile/keyFile. An existing pair is kept unless it has expired
// or does not cover hostname; a pair that exists but cannot be read is an
// error rather than something to overwrite silently.
func ensureSelfSigned(dataDir, certFile, keyFile, hostname string) error {
	_, certErr := os.Stat(certFile)
	_, keyErr := os.Stat(keyFile)
	if certErr == nil && keyErr == nil {
		cert, err := loadPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("%w (delete both files to have a new self-signed certificate made)", err)
		}
		reason := ""
		if time.Now().After(cert.Leaf.NotAfter) {
			reason = "expired"
		} else if err := cert.Leaf.VerifyHostname(hostname); err != nil {
			reason = "made for another hostname"
		} else if missing := missingDevelopmentNames(cert.Leaf); missing != "" {
			// Made by an older pochta that named only the hostname:
			// clients connecting to 127.0.0.1 or localhost refused it.
			reason = "made by an older pochta: it does not name " + missing
		}
		if reason == "" {
			return nil
		}
		slog.Info("replacing the self-signed TLS certificate", "reason", reason, "cert_file", certFile, "hostname", hostname)
	} else {
		for _, err := range []error{certErr, keyErr} {
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("tls: %w", err)
			}
		}
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("tls: creating data_dir: %w", err)
	}
	certPEM, keyPEM, err := selfSigned(hostname, time.Now())
	if err != nil {
		return err
	}
	// The key goes first: a crash between the two writes leaves a key
	// without a certificate, which the next start simply replaces.
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return err
	}
	slog.Info("created a self-signed TLS certificate", "cert_file", certFile, "hostname", hostname)
	return nil
}

// missingDevelopmentNames names the subjectAltNames selfSigned puts in
// (localhost, 127.0.0.1, ::1) that an existing self-signed certificate
// lacks; "" when none is missing.
func missingDevelopmentNames(c *x509.Certificate) string {
	var missing []string
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if c.VerifyHostname(name) != nil {
			missing = append(missing, name)
		}
	}
	return strings.Join(missing, ", ")
}

// selfSigned creates an ECDSA P-256 certificate and key, PEM-encoded, for
// hostname, localhost, 127.0.0.1 and ::1.
func selfSigned(hostname string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("tls: generating serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hostname, Organization: []string{"pochta self-signed"}},
		// An hour of slack for clients whose clocks run a little behind.
		NotBefore: now.Add(-time.Hour),
		NotAfter:  now.Add(selfSignedValidity),
		// A server certificate, not an authority (CA:FALSE): OpenSSL
		// clients given it as their CA file (fetchmail, offlineimap, swaks,
		// Python) accept a self-signed leaf as its own trust anchor, and
		// mbsync 1.4 then matches it as a "host" certificate, without the
		// name check it cannot do for an IP address such as 127.0.0.1;
		// as a CA, mbsync would check the name and refuse 127.0.0.1.
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, name := range []string{hostname, "localhost"} {
		if ip := net.ParseIP(name); ip != nil {
			if !ip.IsLoopback() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
			continue
		}
		if name != "" && (len(tmpl.DNSNames) == 0 || tmpl.DNSNames[0] != name) {
			tmpl.DNSNames = append(tmpl.DNSNames, name)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: creating certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: encoding key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so a reader never sees half a PEM file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("tls: writing %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("tls: writing %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tls: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tls: writing %s: %w", path, err)
	}
	return nil
}
