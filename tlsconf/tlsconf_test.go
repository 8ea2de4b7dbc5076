package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// writePair writes a fresh self-signed pair for hostname into dir and
// returns the file names.
func writePair(t *testing.T, dir, name, hostname string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := selfSigned(hostname, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestSelfSignedCertificateIsCreatedOnceAndReused(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data") // does not exist yet
	m, err := Load("", "", dataDir, "mail.example.test")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !m.SelfSigned() || m.CertFile() != filepath.Join(dataDir, SelfSignedCert) {
		t.Errorf("SelfSigned = %v, CertFile = %q; want the self-signed certificate in %s", m.SelfSigned(), m.CertFile(), dataDir)
	}
	leaf := m.Certificate().Leaf
	if !slices.Contains(leaf.DNSNames, "mail.example.test") || !slices.Contains(leaf.DNSNames, "localhost") {
		t.Errorf("DNS names = %v, want the hostname and localhost", leaf.DNSNames)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Contains(ips, "127.0.0.1") || !slices.Contains(ips, "::1") {
		t.Errorf("IP addresses = %v, want 127.0.0.1 and ::1", ips)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if years := time.Until(leaf.NotAfter).Hours() / 24 / 365; years < 9.9 {
		t.Errorf("certificate valid for %.1f years, want about 10", years)
	}
	for file, want := range map[string]os.FileMode{dataDir: 0o700, filepath.Join(dataDir, SelfSignedKey): 0o600} {
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %o, want %o", file, got, want)
		}
	}

	again, err := Load("", "", dataDir, "mail.example.test")
	if err != nil {
		t.Fatalf("second Load: %v", err)
	}
	if got, want := again.Certificate().Leaf.SerialNumber, leaf.SerialNumber; got.Cmp(want) != 0 {
		t.Errorf("second Load made a new certificate (serial %v, first %v); want the first one reused", got, want)
	}
}

func TestSelfSignedCertificateIsReplacedWhenHostnameChanges(t *testing.T) {
	dataDir := t.TempDir()
	first, err := Load("", "", dataDir, "old.example.test")
	if err != nil {
		t.Fatal(err)
	}
	second, err := Load("", "", dataDir, "new.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if first.Certificate().Leaf.SerialNumber.Cmp(second.Certificate().Leaf.SerialNumber) == 0 {
		t.Fatal("certificate for old.example.test kept after the hostname changed")
	}
	if err := second.Certificate().Leaf.VerifyHostname("new.example.test"); err != nil {
		t.Errorf("new certificate: %v", err)
	}
}

func TestSelfSignedKeyWithoutCertificateIsReplaced(t *testing.T) {
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, SelfSignedKey), []byte("left over from a crash"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load("", "", dataDir, "mail.example.test"); err != nil {
		t.Fatalf("Load after a half-written pair: %v", err)
	}
}

func TestSelfSignedPairThatDoesNotLoadIsAnError(t *testing.T) {
	dataDir := t.TempDir()
	for _, name := range []string{SelfSignedCert, SelfSignedKey} {
		if err := os.WriteFile(filepath.Join(dataDir, name), []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Load("", "", dataDir, "mail.example.test")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dataDir, SelfSignedCert)) {
		t.Fatalf("Load = %v, want an error naming the broken certificate (not a silent overwrite)", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dataDir, SelfSignedCert)); string(b) != "garbage" {
		t.Error("the broken certificate was overwritten")
	}
}

func TestGivenFilesAreLoaded(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "mail", "mail.example.test")
	dataDir := filepath.Join(dir, "data")
	m, err := Load(certFile, keyFile, dataDir, "mail.example.test")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if m.SelfSigned() || m.CertFile() != certFile {
		t.Errorf("SelfSigned = %v, CertFile = %q; want the given %s", m.SelfSigned(), m.CertFile(), certFile)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("data_dir touched although certificate files were given: %v", err)
	}
}

func TestMismatchedFilesGiveAClearError(t *testing.T) {
	dir := t.TempDir()
	certFile, _ := writePair(t, dir, "one", "mail.example.test")
	_, otherKey := writePair(t, dir, "two", "mail.example.test")
	_, err := Load(certFile, otherKey, "", "mail.example.test")
	if err == nil {
		t.Fatal("Load with a key that does not match the certificate succeeded")
	}
	for _, want := range []string{certFile, otherKey, "does not match"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestUnreadableFileIsNamed(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "mail", "mail.example.test")
	missing := filepath.Join(dir, "absent.crt")
	if _, err := Load(missing, keyFile, "", "h"); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(missing cert) = %v, want an error naming %s", err, missing)
	}
	if _, err := Load(certFile, "", "", "h"); err == nil || !strings.Contains(err.Error(), "key_file") {
		t.Errorf("Load(cert without key) = %v, want an error about key_file", err)
	}
}

// handshake connects to addr trusting roots and returns the certificate the
// server presented and the greeting it wrote.
func handshake(t *testing.T, addr string, roots *x509.CertPool) (*x509.Certificate, string) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: roots, ServerName: "mail.example.test"})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	greeting, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	state := conn.ConnectionState()
	if state.Version < tls.VersionTLS12 {
		t.Errorf("negotiated TLS version %x, want at least 1.2", state.Version)
	}
	return state.PeerCertificates[0], string(greeting)
}

// serveGreeting accepts TLS connections on 127.0.0.1 with cfg and writes
// "hello" on each until the test ends.
func serveGreeting(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello")) // the handshake happens here
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestTLSHandshakeOnLoopback(t *testing.T) {
	m, err := Load("", "", t.TempDir(), "mail.example.test")
	if err != nil {
		t.Fatal(err)
	}
	addr := serveGreeting(t, m.TLSConfig())
	roots := x509.NewCertPool()
	roots.AddCert(m.Certificate().Leaf)
	peer, greeting := handshake(t, addr, roots)
	if greeting != "hello" || peer.SerialNumber.Cmp(m.Certificate().Leaf.SerialNumber) != 0 {
		t.Errorf("got greeting %q from certificate %v, want hello from %v", greeting, peer.SerialNumber, m.Certificate().Leaf.SerialNumber)
	}

	old, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: roots, ServerName: "mail.example.test", MaxVersion: tls.VersionTLS11})
	if err == nil {
		old.Close()
		t.Error("a TLS 1.1 client completed the handshake; want TLS 1.2 at least")
	}
}

func TestReloadServesTheNewCertificateToNewConnections(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "mail", "mail.example.test")
	m, err := Load(certFile, keyFile, "", "mail.example.test")
	if err != nil {
		t.Fatal(err)
	}
	first := m.Certificate().Leaf
	addr := serveGreeting(t, m.TLSConfig())
	roots := x509.NewCertPool()
	roots.AddCert(first)
	if peer, _ := handshake(t, addr, roots); peer.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("before reload the server presented %v, want %v", peer.SerialNumber, first.SerialNumber)
	}

	writePair(t, dir, "mail", "mail.example.test") // overwrite in place, as certbot would
	if err := m.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	second := m.Certificate().Leaf
	roots.AddCert(second)
	if peer, _ := handshake(t, addr, roots); peer.SerialNumber.Cmp(second.SerialNumber) != 0 || first.SerialNumber.Cmp(second.SerialNumber) == 0 {
		t.Errorf("after reload the server presented %v, want the new %v", peer.SerialNumber, second.SerialNumber)
	}

	if err := os.WriteFile(keyFile, []byte("broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(); err == nil {
		t.Error("Reload of a broken key succeeded")
	}
	if m.Certificate().Leaf.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Error("a failed Reload replaced the working certificate")
	}
}

func TestTLS12OffersOnlyForwardSecretAEADSuites(t *testing.T) {
	m, err := Load("", "", t.TempDir(), "mail.example.test")
	if err != nil {
		t.Fatal(err)
	}
	addr := serveGreeting(t, m.TLSConfig())
	roots := x509.NewCertPool()
	roots.AddCert(m.Certificate().Leaf)
	dial := func(suite uint16) (uint16, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
			RootCAs: roots, ServerName: "mail.example.test",
			MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite},
		})
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		return conn.ConnectionState().CipherSuite, nil
	}
	for _, suite := range []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,    // CBC with a SHA-1 MAC
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, // CBC
		tls.TLS_RSA_WITH_AES_128_GCM_SHA256,         // no forward secrecy
		tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	} {
		if _, err := dial(suite); err == nil {
			t.Errorf("a TLS 1.2 client offering only %s completed the handshake", tls.CipherSuiteName(suite))
		}
	}
	for _, suite := range []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	} {
		got, err := dial(suite)
		if err != nil || got != suite {
			t.Errorf("a TLS 1.2 client offering %s: suite %s, error %v; want that suite", tls.CipherSuiteName(suite), tls.CipherSuiteName(got), err)
		}
	}
	for _, suite := range m.TLSConfig().CipherSuites {
		name := tls.CipherSuiteName(suite)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20")) {
			t.Errorf("configured suite %s is not ECDHE with AEAD", name)
		}
	}
}

// A client given tls-cert.pem as its only trust anchor (fetchmail's
// sslcertfile, offlineimap's sslcacertfile, swaks --tls-ca-path) must
// accept the server under every name a development setup uses.
func TestSelfSignedCertificateVerifiesForHostnameAndLoopbackNames(t *testing.T) {
	m, err := Load("", "", t.TempDir(), "mail.example.test")
	if err != nil {
		t.Fatal(err)
	}
	leaf := m.Certificate().Leaf
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	for _, name := range []string{"mail.example.test", "localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("verify as %s with the certificate as the CA: %v", name, err)
		}
	}
	// mbsync 1.4 trusts a non-CA certificate in its CertificateFile as a
	// host certificate, without the name check it cannot do for 127.0.0.1.
	if leaf.IsCA {
		t.Error("the development certificate is a CA: mbsync would check names and refuse 127.0.0.1")
	}
}

// A self-signed certificate from an older pochta named only the hostname;
// it is replaced on the next start.
func TestOldSelfSignedCertificateWithoutLoopbackNamesIsReplaced(t *testing.T) {
	dataDir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "mail.example.test"},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour * 24),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"mail.example.test"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, SelfSignedCert), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, SelfSignedKey), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := Load("", "", dataDir, "mail.example.test")
	if err != nil {
		t.Fatal(err)
	}
	leaf := m.Certificate().Leaf
	if leaf.SerialNumber.Cmp(big.NewInt(7)) == 0 {
		t.Fatal("the old certificate without localhost, 127.0.0.1 and ::1 was kept")
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("replacement: %v", err)
	}
}
