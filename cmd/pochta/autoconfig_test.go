package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pochta/pochta/config"
)

func TestServeAnswersAutoconfigOnTheHTTPListener(t *testing.T) {
	dir := t.TempDir()
	cfgPath, extra := writeConfigAndPorts(t, dir, 1)
	httpAddr := extra[0]
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(f, "\n[http]\nlisten = %q\n", httpAddr); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	startDaemon(t, cfgPath, filepath.Join(dir, "data"))

	resp, err := http.Get("http://" + httpAddr + "/mail/config-v1.1.xml?emailaddress=alice%40example.test")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, imapsPort, _ := strings.Cut(cfg.IMAP.TLSListen, ":")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "<port>"+imapsPort+"</port>") ||
		!strings.Contains(string(body), "<hostname>mail.example.test</hostname>") {
		t.Errorf("GET autoconfig: %d\n%s\nwant the IMAPS port %s and the hostname", resp.StatusCode, body, imapsPort)
	}
}
