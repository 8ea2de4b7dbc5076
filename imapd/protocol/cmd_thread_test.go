package protocol

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/pochta/pochta/imapd/wire"
)

func leaf(n uint32, children ...ThreadNode) ThreadNode {
	return ThreadNode{Num: n, Children: children}
}

// TestWriteThread checks the thread-list syntax against RFC 5256 4's
// examples.
func TestWriteThread(t *testing.T) {
	tests := []struct {
		name    string
		threads []ThreadNode
		want    string
	}{
		{
			// RFC 5256 4: "(2)(3 6 (4 23)(44 7 96))".
			"RFC 5256 example",
			[]ThreadNode{leaf(2), leaf(3, leaf(6, leaf(4, leaf(23)), leaf(44, leaf(7, leaf(96)))))},
			"(2)(3 6 (4 23)(44 7 96))",
		},
		{
			// RFC 5256 4: a dummy parent of 3 and 5 is "((3)(5))".
			"dummy parent",
			[]ThreadNode{leaf(0, leaf(3), leaf(5))},
			"((3)(5))",
		},
		{
			"several replies at once",
			[]ThreadNode{leaf(1, leaf(2), leaf(3, leaf(4)))},
			"(1 (2)(3 4))",
		},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		e := wire.NewEncoder(w)
		for _, th := range tt.threads {
			writeThread(e, th)
		}
		if err := e.Flush(); err != nil {
			t.Fatal(err)
		}
		if b.String() != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, b.String(), tt.want)
		}
	}
}

func TestOrderedSet(t *testing.T) {
	for _, tt := range []struct {
		in   []uint32
		want string
	}{
		{[]uint32{5}, "5"},
		{[]uint32{1, 2, 3, 7, 4, 5}, "1:3,7,4:5"},
		{[]uint32{9, 8, 7}, "9,8,7"},
	} {
		if got := orderedSet(tt.in); got != tt.want {
			t.Errorf("orderedSet(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
