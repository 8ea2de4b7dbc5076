package message

import "strings"

// QuoteLocalPart returns addr (local@domain, its local part as go-smtp
// hands it over: unquoted) in the form RFC 5321 4.1.2 requires on the
// wire: a local part that is not a Dot-string becomes a Quoted-string,
// with backslash before every '"' and '\'. So `"x@y"@evil.test`, received
// as x@y@evil.test, goes out as `"x@y"@evil.test` and not as an address
// of the domain y@evil.test. The domain is the part after the last '@'.
func QuoteLocalPart(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	local, domain := addr[:at], addr[at:]
	if isDotString(local) {
		return addr
	}
	var b strings.Builder
	b.Grow(len(addr) + 4)
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	b.WriteString(domain)
	return b.String()
}

// isDotString reports whether s is an RFC 5321 Dot-string: atoms of atext
// joined by single dots.
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.':
		case c >= 0x80:
			// SMTPUTF8 (RFC 6531) extends atext with UTF-8.
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// IsAddressLiteral reports whether domain is an address literal such as
// [127.0.0.1] or [IPv6:::1] (RFC 5321 4.1.3).
func IsAddressLiteral(domain string) bool {
	return len(domain) > 2 && domain[0] == '[' && domain[len(domain)-1] == ']'
}
