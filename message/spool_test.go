package message

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"testing/iotest"
)

// A message past SpoolAfter comes back whole, normalised, after the
// headroom, and leaves no file behind in the spool directory.
func TestReadSpoolsBigMessagesAndLeavesNothingBehind(t *testing.T) {
	dir := t.TempDir()
	line := "0123456789abcdef\r\n"
	raw := strings.Repeat(line, 3*SpoolAfter/len(line)) + "bare\rcr\nend"
	want := strings.Repeat(line, 3*SpoolAfter/len(line)) + "bare\r\ncr\r\nend"
	b, err := Read(iotest.HalfReader(strings.NewReader(raw)), 64, 10*SpoolAfter, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !b.mapped {
		t.Error("a 3 MiB message was not spooled")
	}
	got := b.Bytes()
	if len(got) < 64 || !bytes.Equal(got[64:], []byte(want)) {
		t.Fatalf("spooled message differs (%d bytes, want %d)", len(got)-64, len(want))
	}
	// Editing the header in place is allowed and stays private.
	copy(got[:64], bytes.Repeat([]byte("X"), 64))
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("spool directory holds %d entries while the message is in use", len(entries))
	}
	if err := b.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(strings.NewReader(raw), 0, SpoolAfter+10, dir); err != ErrTooLarge {
		t.Errorf("over the limit: %v, want ErrTooLarge", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("spool directory holds %d entries after a refused message", len(entries))
	}
}

func TestReadKeepsSmallMessagesInMemory(t *testing.T) {
	b, err := Read(strings.NewReader("Subject: x\n\nhi\n"), 8, 1<<20, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if b.mapped || string(b.Bytes()[8:]) != "Subject: x\r\n\r\nhi\r\n" {
		t.Errorf("mapped %v, message %q", b.mapped, b.Bytes()[8:])
	}
	if err := b.Release(); err != nil {
		t.Fatal(err)
	}
}
