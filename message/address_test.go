package message

import "testing"

func TestQuoteLocalPart(t *testing.T) {
	cases := map[string]string{
		"bob@example.test":           "bob@example.test",
		"first.last+tag@x.test":      "first.last+tag@x.test",
		"x@y@evil.test":              `"x@y"@evil.test`,
		`a"b@x.test`:                 `"a\"b"@x.test`,
		`back\slash@x.test`:          `"back\\slash"@x.test`,
		".leading@x.test":            `".leading"@x.test`,
		"two..dots@x.test":           `"two..dots"@x.test`,
		"":                           "",
		"user@[127.0.0.1]":           "user@[127.0.0.1]",
		"with,comma@example.test":    `"with,comma"@example.test`,
		"ünïcode@example.test":       "ünïcode@example.test",
		"semi;colon@example.test":    `"semi;colon"@example.test`,
		"paren(s)@example.test":      `"paren(s)"@example.test`,
		"angle<bracket@example.test": `"angle<bracket"@example.test`,
	}
	for in, want := range cases {
		if got := QuoteLocalPart(in); got != want {
			t.Errorf("QuoteLocalPart(%q) = %q, want %q", in, got, want)
		}
	}
}
