package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigImportPrintsTOMLThatPassesConfigCheck(t *testing.T) {
	for _, sample := range []string{"config-seed.xml", "config-smtp.xml", "config-appsettings.xml"} {
		xmlPath := filepath.Join("..", "..", "config", "testdata", sample)
		code, stdout, stderr := pochta(t, "", "config", "import", xmlPath)
		if code != exitOK {
			t.Fatalf("config import %s: exit %d, stderr %q", sample, code, stderr)
		}
		if !strings.Contains(stderr, "is not known; ignored") {
			t.Errorf("config import %s: no warning on stderr for the unknown elements: %q", sample, stderr)
		}
		if strings.Contains(stdout, "is not known") {
			t.Errorf("config import %s: warnings leaked into the TOML on stdout", sample)
		}
		tomlPath := filepath.Join(t.TempDir(), "pochta.toml")
		if err := os.WriteFile(tomlPath, []byte(stdout), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, stderr := pochta(t, "", "config", "check", "--config", tomlPath)
		if code != exitOK || out != tomlPath+": OK\n" {
			t.Errorf("config check of the import of %s: exit %d, stdout %q, stderr %q\n%s", sample, code, out, stderr, stdout)
		}
	}
}

func TestConfigImportOfBrokenXMLExitsOneNamingTheLine(t *testing.T) {
	bad := filepath.Join("..", "..", "config", "testdata", "bad-unclosed.xml")
	code, stdout, stderr := pochta(t, "", "config", "import", bad)
	if code != exitError || stdout != "" || !strings.Contains(stderr, "bad-unclosed.xml:5: invalid XML") {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1 and bad-unclosed.xml:5: invalid XML", code, stdout, stderr)
	}
	code, _, stderr = pochta(t, "", "config", "import", filepath.Join(t.TempDir(), "missing.xml"))
	if code != exitError || !strings.Contains(stderr, "missing.xml") {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := pochta(t, "", "config", "import"); code != exitUsage {
		t.Errorf("no file argument: exit %d, want 2", code)
	}
}

func TestConfigCheckAcceptsTheExampleAndRejectsAnUnknownKey(t *testing.T) {
	example := filepath.Join("..", "..", "config.toml.example")
	if code, stdout, stderr := pochta(t, "", "config", "check", "--config", example); code != exitOK {
		t.Errorf("config check config.toml.example: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("hostname = \"mx.test\"\n[smtp]\nmax_recipents = 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := pochta(t, "", "config", "check", "--config", bad)
	if code != exitError || !strings.Contains(stderr, "bad.toml:3: unknown key \"smtp.max_recipents\"") {
		t.Errorf("exit %d, stderr %q; want 1 naming bad.toml:3 and the key", code, stderr)
	}
}
