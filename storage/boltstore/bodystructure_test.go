package boltstore

import (
	"bytes"
	"testing"

	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/pochta/pochta/internal/mimetest"
)

// FuzzBodyStructureMatchesGoIMAP: the streaming extraction gives exactly
// what go-imap's (which reads every part whole) gives, so clients see the
// same BODYSTRUCTURE as before.
func FuzzBodyStructureMatchesGoIMAP(f *testing.F) {
	f.Add([]byte(nestedMessage))
	f.Add(mimetest.Nested(5))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: text/html\r\nContent-Language: en, de\r\n\r\n<p>hi\r\n--x\r\nContent-Disposition: attachment; filename=a.bin\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\nBBBB\r\n--x--\r\n"))
	f.Add([]byte("Subject: plain\r\n\r\nline\nbare lf\r\nend"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 1<<16 {
			return
		}
		want := imapserver.ExtractBodyStructure(bytes.NewReader(raw))
		got := extractBodyStructure(raw)
		if err := sameBodyStructure(want, got); err != nil {
			t.Fatalf("differs from go-imap: %v", err)
		}
	})
}
