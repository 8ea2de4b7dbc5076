package pgstore

import (
	"strings"
	"testing"
)

func TestRedactedHidesPasswordsOnly(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://pochta:s3cret@db:5432/mail":        "postgres://pochta:xxxxx@db:5432/mail",
		"postgres://pochta@db:5432/mail?sslmode=x":     "postgres://pochta@db:5432/mail?sslmode=x",
		"host=db user=pochta password=s3cret dbname=m": "host=db user=pochta password=xxxxx dbname=m",
		"host=db password = 's3 cret' dbname=m":        "host=db password = xxxxx dbname=m",
	} {
		got := Redacted(in)
		if got != want || strings.Contains(got, "s3") {
			t.Errorf("Redacted(%q) = %q, want %q", in, got, want)
		}
	}
}
