package config

import (
	"reflect"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestKeyLinesSkipsStringsArraysAndComments(t *testing.T) {
	text := `# header comment
a = 1
b = """
c = "not a key"
[not.a.table]
"""
d = [
  "x = 1",   # comment with = sign
  '[nope]',
]
e = '''
f = 2'''
"quoted.key" = "v" # trailing
g.h = { i = 1, j = [1, 2] }

[ sect . "sub" ]
k = "a \" [x] = 1"
'lit' = 3

[[arr]]
l = 1
[[arr]]
m = 2
n = """two
lines""" 
o = 5
`
	var m map[string]any
	if _, err := toml.Decode(text, &m); err != nil {
		t.Fatalf("test document is not valid TOML: %v", err)
	}
	want := map[string]int{
		"a": 2, "b": 3, "d": 7, "e": 11, "quoted.key": 13, "g": 14, "g.h": 14,
		"sect": 16, "sect.sub": 16, "sect.sub.k": 17, "sect.sub.lit": 18,
		"arr": 20, "arr.l": 21, "arr.m": 23, "arr.n": 24, "arr.o": 26,
	}
	if got := keyLines(text); !reflect.DeepEqual(got, want) {
		t.Errorf("keyLines:\n got %v\nwant %v", got, want)
	}
}

func TestKeyLinesSurvivesTruncatedText(t *testing.T) {
	text := "a = \"x\\\"\"\nb = '''m\n'''\n[s . \"q\\\"\"]\nc = [1, {d = \"\"\"e\"\"\"}]\n'k' = 1\n"
	for i := range len(text) + 1 {
		keyLines(text[:i]) // must not panic or loop on any prefix
	}
}
