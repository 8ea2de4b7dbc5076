package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestDeeplyDottedKeysAreRefusedQuickly(t *testing.T) {
	for _, in := range []string{
		strings.Repeat("a.", 16000) + "b = 1",
		"[" + strings.Repeat("a.", 16000) + "b]\n",
		"x = 1\n" + strings.Repeat("M", maxConfigSize),
		"a = " + strings.Repeat("{b=", 20000) + "1" + strings.Repeat("}", 20000),
		"a = " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000),
	} {
		start := time.Now()
		_, err := Parse("deep.toml", []byte(in))
		var ce *Error
		if !errors.As(err, &ce) || ce.File != "deep.toml" {
			t.Errorf("Parse(%.20q…) = %v, want a *config.Error naming the file", in, err)
		}
		// Quadratic decoding took over 20 s here; linear refusal is
		// milliseconds. The bound is loose for a loaded machine.
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Parse(%.20q…) took %v", in, d)
		}
	}
}

func TestDotsInStringsAndCommentsDoNotCount(t *testing.T) {
	var domains strings.Builder
	for i := range 200 {
		fmt.Fprintf(&domains, `"d%d.a.b.example", `, i)
	}
	in := "# " + strings.Repeat("e.g. ", 300) + "\nhostname = \"mail.example.com\"\ndomains = [" + domains.String() + "\"x.example\"]\n"
	if _, err := Parse("ok.toml", []byte(in)); err != nil {
		t.Fatalf("a config with many dots inside strings and comments: %v", err)
	}
}
