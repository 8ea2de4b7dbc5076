package smtpd

import (
	"errors"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// errMalformedSASL answers a SASL exchange the client got wrong.
var errMalformedSASL = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
	Message: "Malformed authentication data"}

// saslReplies makes every SASL failure a proper SMTP reply: go-smtp turns a
// plain error into "454 4.7.0 <text>", a temporary failure that would make
// clients retry a malformed exchange forever.
type saslReplies struct{ sasl.Server }

func (s saslReplies) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := s.Server.Next(response)
	if err != nil {
		var smtpErr *smtp.SMTPError
		if !errors.As(err, &smtpErr) {
			return nil, false, errMalformedSASL
		}
		return nil, false, smtpErr
	}
	return challenge, done, nil
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login), which go-sasl implements only for clients
// and Outlook still uses: the server asks "Username:" then "Password:",
// and the client may send the user name already with AUTH LOGIN as an
// initial response.
type loginServer struct {
	state        loginState
	username     string
	authenticate func(username, password string) error
}

type loginState int

const (
	loginStart loginState = iota
	loginWantUser
	loginWantPassword
	loginDone
)

// The challenges are fixed by the draft; clients compare them literally.
var (
	loginUserChallenge     = []byte("Username:")
	loginPasswordChallenge = []byte("Password:")
)

func newLoginServer(authenticate func(username, password string) error) sasl.Server {
	return &loginServer{authenticate: authenticate}
}

// Next implements sasl.Server.
func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.state {
	case loginStart:
		if response == nil {
			l.state = loginWantUser
			return loginUserChallenge, false, nil
		}
		l.username = string(response)
		l.state = loginWantPassword
		return loginPasswordChallenge, false, nil
	case loginWantUser:
		l.username = string(response)
		l.state = loginWantPassword
		return loginPasswordChallenge, false, nil
	case loginWantPassword:
		l.state = loginDone
		if err := l.authenticate(l.username, string(response)); err != nil {
			return nil, true, err
		}
		return nil, true, nil
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}
