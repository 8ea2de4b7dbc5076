package message

import (
	"errors"
	"strings"
	"testing"

	"github.com/pochta/pochta/internal/mimetest"
)

func TestCheckStructureAcceptsUpToTheLimit(t *testing.T) {
	for _, depth := range []int{0, 1, 2, MaxNesting - 1, MaxNesting} {
		if err := CheckStructure(mimetest.Nested(depth)); err != nil {
			t.Errorf("depth %d: %v, want accepted", depth, err)
		}
	}
}

func TestCheckStructureRefusesPastTheLimit(t *testing.T) {
	for _, depth := range []int{MaxNesting + 1, 1000, 5000} {
		if err := CheckStructure(mimetest.Nested(depth)); !errors.Is(err, ErrTooDeep) {
			t.Errorf("depth %d: %v, want ErrTooDeep", depth, err)
		}
	}
}

// Encapsulated messages count as levels too, as they do in a body
// structure.
func TestCheckStructureCountsEncapsulatedMessages(t *testing.T) {
	build := func(depth int) []byte {
		var b strings.Builder
		b.WriteString("Subject: outer\r\n")
		for range depth {
			b.WriteString("Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n")
		}
		b.WriteString("\r\nhello\r\n")
		return []byte(b.String())
	}
	if err := CheckStructure(build(MaxNesting)); err != nil {
		t.Errorf("%d encapsulated messages: %v, want accepted", MaxNesting, err)
	}
	if err := CheckStructure(build(MaxNesting + 1)); !errors.Is(err, ErrTooDeep) {
		t.Errorf("%d encapsulated messages: %v, want ErrTooDeep", MaxNesting+1, err)
	}
}

// Sibling parts do not add depth, and a boundary line of an outer
// multipart closes the inner ones even without their close delimiters.
func TestCheckStructureSiblingsAndUnclosedParts(t *testing.T) {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=outer\r\n\r\n")
	for range 3 * MaxNesting {
		b.WriteString("--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\nx\r\n")
	}
	b.WriteString("--outer--\r\n")
	if err := CheckStructure([]byte(b.String())); err != nil {
		t.Fatalf("%d sibling parts two levels deep: %v, want accepted", 3*MaxNesting, err)
	}
}

// The cost of refusing a deep message does not grow with its depth: the
// check stops at the first level past the limit. Counted in allocations,
// which do not depend on the machine's load.
func TestCheckStructureCostBoundedByTheLimit(t *testing.T) {
	allocs := func(depth int) float64 {
		raw := mimetest.Nested(depth)
		return testing.AllocsPerRun(5, func() { _ = CheckStructure(raw) })
	}
	at1000, at10000 := allocs(1000), allocs(10000)
	if at10000 > at1000+5 {
		t.Errorf("refusing depth 10000 allocates %.0f times, depth 1000 %.0f: the cost grows with depth", at10000, at1000)
	}
}

// Accepted messages cost time linear in their size: twice the parts, at
// most about twice the allocations.
func TestCheckStructureLinearInSize(t *testing.T) {
	siblings := func(n int) []byte {
		var b strings.Builder
		b.WriteString("Content-Type: multipart/mixed; boundary=outer\r\n\r\n")
		for range n {
			b.WriteString("--outer\r\nContent-Type: text/plain\r\n\r\nx\r\n")
		}
		b.WriteString("--outer--\r\n")
		return []byte(b.String())
	}
	small, big := siblings(1000), siblings(8000)
	a := testing.AllocsPerRun(3, func() { _ = CheckStructure(small) })
	b := testing.AllocsPerRun(3, func() { _ = CheckStructure(big) })
	if b > 8*a*1.5+10 {
		t.Errorf("8x the parts cost %.0f allocations against %.0f", b, a)
	}
}

func BenchmarkCheckStructureRefused1000(b *testing.B) {
	raw := mimetest.Nested(1000)
	b.ReportAllocs()
	for b.Loop() {
		_ = CheckStructure(raw)
	}
}

// A message may have MaxParts parts, the message itself included; one
// more is refused, and so is a part count past it reached through
// encapsulated messages.
func TestCheckStructureCountsParts(t *testing.T) {
	if err := CheckStructure(mimetest.Wide(MaxParts - 1)); err != nil {
		t.Errorf("%d parts: %v, want accepted", MaxParts, err)
	}
	for _, children := range []int{MaxParts, 80000} {
		if err := CheckStructure(mimetest.Wide(children)); !IsTooManyParts(err) {
			t.Errorf("%d parts: %v, want ErrTooManyParts", children+1, err)
		}
	}
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=w\r\n\r\n")
	for range MaxParts / 2 {
		b.WriteString("--w\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi\r\n")
	}
	b.WriteString("--w--\r\n")
	if err := CheckStructure([]byte(b.String())); !IsTooManyParts(err) {
		t.Errorf("%d parts with their encapsulated messages: %v, want ErrTooManyParts", MaxParts+1, err)
	}
}

// TestCheckStructureHeaderSize: a header section, the message's own or a
// part's (also of an encapsulated message), may be MaxHeaderBytes long and
// not a byte more; a long body is not a header.
func TestCheckStructureHeaderSize(t *testing.T) {
	fields := func(n int) string { // n bytes of header fields, CRLF-ended
		line := "X-Filler: " + strings.Repeat("f", 88) + "\r\n" // 100 bytes
		s := strings.Repeat(line, n/100)
		if r := n % 100; r > 0 {
			s += "X: " + strings.Repeat("g", r-5) + "\r\n"
		}
		return s
	}
	multipart := func(partHeader string) string {
		return "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" + partHeader + "\r\nbody\r\n--b--\r\n"
	}
	rfc822 := func(inner string) string {
		return "Content-Type: message/rfc822\r\n\r\n" + inner + "\r\nbody\r\n"
	}
	// The header's bytes, the blank line excluded.
	top := func(n int) string { return fields(n) + "\r\nbody\r\n" }
	for _, c := range []struct {
		name string
		raw  string
		want error
	}{
		{"own header at the limit", top(MaxHeaderBytes), nil},
		{"own header one byte over", top(MaxHeaderBytes + 1), ErrHeaderTooBig},
		{"a header without a body", fields(MaxHeaderBytes + 1), ErrHeaderTooBig},
		{"a part's header over", multipart(fields(MaxHeaderBytes + 1)), ErrHeaderTooBig},
		{"a part's header at the limit", multipart(fields(MaxHeaderBytes - 2000)), nil},
		{"an encapsulated header over", rfc822(fields(MaxHeaderBytes + 1)), ErrHeaderTooBig},
		{"a long body", "Subject: x\r\n\r\n" + strings.Repeat("body line\r\n", MaxHeaderBytes), nil},
		{"one header line over the limit", "Subject: " + strings.Repeat("s", MaxHeaderBytes) + "\r\n\r\nx\r\n", ErrHeaderTooBig},
		{"LF line ends at the limit", strings.ReplaceAll(top(MaxHeaderBytes-3000), "\r\n", "\n"), nil},
	} {
		if err := CheckStructure([]byte(c.raw)); !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		// CheckHeaderSize: the same for the message's own header.
		own := c.want
		if strings.Contains(c.name, "part") || strings.Contains(c.name, "encapsulated") {
			own = nil
		}
		if err := CheckHeaderSize([]byte(c.raw)); !errors.Is(err, own) || (own == nil && err != nil) {
			t.Errorf("CheckHeaderSize, %s: %v, want %v", c.name, err, own)
		}
	}
}
