package config

import (
	"testing"
	"time"
)

func TestDurationAcceptsGoDurationsAndDays(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"90s", 90 * time.Second},
		{"5m", 5 * time.Minute},
		{"168h", 168 * time.Hour},
		{"0s", 0},
		{"0", 0},
		{"7d", 7 * 24 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"2d30m15s", 48*time.Hour + 30*time.Minute + 15*time.Second},
		{"1.5d", 36 * time.Hour},
		{"-2d", -48 * time.Hour},
		{"+1d", 24 * time.Hour},
		{"1500ms", 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		var d Duration
		if err := d.UnmarshalText([]byte(tt.in)); err != nil {
			t.Errorf("UnmarshalText(%q): %v", tt.in, err)
			continue
		}
		if d.Duration != tt.want {
			t.Errorf("UnmarshalText(%q) = %v, want %v", tt.in, d.Duration, tt.want)
		}
	}
}

func TestDurationRejectsMalformedText(t *testing.T) {
	for _, in := range []string{"", "7", "d", "7x", "7dd", "1d-2h", "1.2.3d", "d7", "-", "9999999999999d", "100000d100000d"} {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("UnmarshalText(%q) = %v, want an error", in, d.Duration)
		}
	}
}

func TestDurationMarshalsAsAPersonWouldWriteIt(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{90 * time.Second, "1m30s"},
		{5 * time.Minute, "5m"},
		{4 * time.Hour, "4h"},
		{7 * 24 * time.Hour, "7d"},
		{36 * time.Hour, "1d12h"},
		{24*time.Hour + 1500*time.Millisecond, "1d1.5s"},
		{-48 * time.Hour, "-2d"},
		{250 * time.Millisecond, "250ms"},
	}
	for _, tt := range tests {
		text, err := Duration{tt.in}.MarshalText()
		if err != nil {
			t.Fatalf("MarshalText(%v): %v", tt.in, err)
		}
		if string(text) != tt.want {
			t.Errorf("MarshalText(%v) = %q, want %q", tt.in, text, tt.want)
		}
		var back Duration
		if err := back.UnmarshalText(text); err != nil || back.Duration != tt.in {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v back", text, back.Duration, err, tt.in)
		}
	}
}
