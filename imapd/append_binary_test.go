package imapd

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// fetchLiteral sends a FETCH of one item and returns the literal of its
// response with the line before it, then reads up to the tagged OK.
func fetchLiteral(t *testing.T, r *rawConn, cmd string) (head string, lit []byte) {
	t.Helper()
	tag := strings.Fields(cmd)[0]
	r.send(cmd)
	re := regexp.MustCompile(`~?\{(\d+)\}\r\n$`)
	for lit == nil {
		line, err := r.r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		if strings.HasPrefix(line, tag+" ") {
			t.Fatalf("%s: %q before a literal", cmd, line)
		}
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		head, lit = line, make([]byte, n)
		if _, err := io.ReadFull(r.r, lit); err != nil {
			t.Fatal(err)
		}
	}
	r.expect(tag + " OK")
	return head, lit
}

// RFC 3516 4.4 (imaptest append-binary): APPEND with a literal8 stores the
// message byte for byte, bare LF, bare CR and NUL included, and BINARY[]
// gives those bytes back in a literal8. A normal literal cannot carry NUL
// (RFC 3501 9, CHAR8), so BODY[] sends each NUL as 0x80, size unchanged.
func TestAppendLiteral8KeepsBytes(t *testing.T) {
	e := newTestEnv(t)
	r := e.raw()
	r.ok(fmt.Sprintf("l LOGIN %s %q", alice, password))
	body := "\x00-\xe4\n\r\n\n\n"
	msg := "From: user@domain.org\r\nMime-Version: 1.0\r\nContent-Type: application/octet-stream\r\n" +
		"Content-Transfer-Encoding: binary\r\n\r\n" + body
	r.send(fmt.Sprintf("a APPEND INBOX ~{%d}", len(msg)))
	r.expect("+")
	if _, err := io.WriteString(r.conn, msg+"\r\n"); err != nil {
		t.Fatal(err)
	}
	r.expect("a OK")
	r.ok("s SELECT INBOX")

	head, got := fetchLiteral(t, r, "f1 FETCH 1 BINARY.PEEK[1]")
	if !strings.Contains(head, "BINARY[1] ~{") || string(got) != body {
		t.Errorf("BINARY[1]: %q %q, want a literal8 of %q", head, got, body)
	}
	_, got = fetchLiteral(t, r, "f2 FETCH 1 BINARY.PEEK[]")
	if string(got) != msg {
		t.Errorf("BINARY[]: %q, want the appended bytes %q", got, msg)
	}
	head, got = fetchLiteral(t, r, "f3 FETCH 1 BODY.PEEK[1]")
	if want := "\x80-\xe4\n\r\n\n\n"; strings.Contains(head, "~{") || string(got) != want {
		t.Errorf("BODY[1]: %q %q, want a normal literal of %q", head, got, want)
	}
	if bytes.IndexByte(got, 0) >= 0 {
		t.Errorf("BODY[1] carries a NUL in a normal literal")
	}
}
