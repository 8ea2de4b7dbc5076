package message

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadAllMakesEveryLineEndCRLF(t *testing.T) {
	cases := map[string]string{
		"a\r\nb\r\n":          "a\r\nb\r\n",
		"a\nb\n":              "a\r\nb\r\n",
		"a\rb\r":              "a\r\nb\r\n",
		"x\r.\ry\r\n":         "x\r\n.\r\ny\r\n",
		"\r\r\n\n":            "\r\n\r\n\r\n",
		"\n":                  "\r\n",
		"end\r":               "end\r\n",
		"mixed\r\n\rlf\n\r\n": "mixed\r\n\r\nlf\r\n\r\n",
	}
	for in, want := range cases {
		// One byte per Read: a CR at the end of one read and its LF at
		// the start of the next must stay one line end.
		got, err := ReadAll(iotest.OneByteReader(strings.NewReader(in)), 7, 1<<20)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if len(got) < 7 || string(got[7:]) != want {
			t.Errorf("ReadAll(%q) = %q, want %q", in, got[min(7, len(got)):], want)
		}
		if n := NormalizeLineEndings([]byte(in)); string(n) != want {
			t.Errorf("NormalizeLineEndings(%q) = %q, want %q", in, n, want)
		}
	}
}

func TestReadAllStopsAtTheLimit(t *testing.T) {
	_, err := ReadAll(strings.NewReader(strings.Repeat("x", 2000)), 0, 1000)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err %v, want ErrTooLarge", err)
	}
}

// The buffer grows with what arrives: a short message costs a small
// buffer whatever was announced (there is no way to announce here).
func TestReadAllBufferFollowsTheData(t *testing.T) {
	got, err := ReadAll(strings.NewReader("Subject: hi\r\n\r\nshort\r\n"), 4096, 25<<20)
	if err != nil {
		t.Fatal(err)
	}
	if cap(got) > 4096+readChunk {
		t.Errorf("a 24-byte message got a %d-byte buffer", cap(got))
	}
	big := bytes.Repeat([]byte("0123456789abcdef\r\n"), 1<<16)
	got, err = ReadAll(bytes.NewReader(big), 0, 25<<20)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("a %d-byte message did not come back unchanged (err %v)", len(big), err)
	}
	if cap(got) > 2*len(big) {
		t.Errorf("a %d-byte message got a %d-byte buffer, more than twice its size", len(big), cap(got))
	}
}

func TestNormalizeLineEndingsKeepsCRLFMessageAsIs(t *testing.T) {
	raw := []byte("a\r\nb\r\n")
	if got := NormalizeLineEndings(raw); &got[0] != &raw[0] {
		t.Error("a message with only CRLF was copied")
	}
}
