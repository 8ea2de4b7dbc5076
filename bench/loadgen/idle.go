package main

import (
	"bytes"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// idleWake measures how soon an IMAP session in IDLE sees a delivery made
// by another connection: n messages are submitted one at a time, and for
// each the time from the start of the SMTP transaction (MAIL FROM) to the
// IDLE session's EXISTS is taken. pochta stores the message and tells the
// sessions before its 250, so this is the whole path a user waits for.
// Each wait is bounded by limit.
func idleWake(imapAddr, smtpAddr string, n int, limit time.Duration) ([]time.Duration, error) {
	exists := make(chan uint32, 16)
	c, err := imapclient.DialInsecure(imapAddr, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					exists <- *d.NumMessages
				}
			},
		},
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Login("reader@bench.test", password).Wait(); err != nil {
		return nil, err
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, err
	}
	idle, err := c.Idle()
	if err != nil {
		return nil, err
	}
	defer func() { _ = idle.Close() }()

	s, err := smtp.Dial(smtpAddr)
	if err != nil {
		return nil, err
	}
	defer func() { _ = s.Quit() }()
	if err := s.Auth(sasl.NewPlainClient("", "sender@bench.test", password)); err != nil {
		return nil, err
	}
	msg := message(0)
	want := sel.NumMessages
	var lat []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := s.SendMail("sender@bench.test", []string{"reader@bench.test"}, bytes.NewReader(msg)); err != nil {
			return lat, err
		}
		want++
		timeout := time.After(limit)
		for got := uint32(0); got < want; {
			select {
			case got = <-exists:
			case <-timeout:
				return lat, fmt.Errorf("message %d: no EXISTS %d within %s", i, want, limit)
			}
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}
