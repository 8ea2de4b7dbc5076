package imapd

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/pochta/pochta/storage"
)

func TestLoginTakesFullAddressAndRejectsWrongPassword(t *testing.T) {
	e := newTestEnv(t)
	c := e.dial(nil)
	err := c.Login(alice, "wrong").Wait()
	expectCode(t, err, imap.ResponseCodeAuthenticationFailed, "login with a wrong password")
	err = c.Login("nobody@example.com", password).Wait()
	expectCode(t, err, imap.ResponseCodeAuthenticationFailed, "login as an unknown user")
	if err := c.Login(alice, password).Wait(); err != nil {
		t.Fatalf("login with the right password: %v", err)
	}
	if got := e.metrics.authFailed.Load(); got != 2 {
		t.Errorf("auth failures counted = %d, want 2", got)
	}

	// AUTHENTICATE PLAIN (with SASL-IR) ends in the same check.
	c2 := e.dial(nil)
	if err := c2.Authenticate(sasl.NewPlainClient("", bob, "wrong")); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
		t.Fatalf("AUTHENTICATE PLAIN with a wrong password: %v", err)
	}
	if err := c2.Authenticate(sasl.NewPlainClient("", bob, password)); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN: %v", err)
	}
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("select after AUTHENTICATE: %v", err)
	}
}

func TestLoginRefusedWithoutTLSUnlessAllowed(t *testing.T) {
	e := newTestEnv(t, withSecureAuthOnly())

	plain := e.dial(nil)
	if err := plain.WaitGreeting(); err != nil {
		t.Fatal(err)
	}
	caps := plain.Caps()
	if !caps.Has(imap.CapLoginDisabled) || !caps.Has(imap.CapStartTLS) {
		t.Errorf("plain connection caps %v: want LOGINDISABLED and STARTTLS", caps)
	}
	err := plain.Login(alice, password).Wait()
	expectCode(t, err, imap.ResponseCodePrivacyRequired, "LOGIN without TLS")

	starttls, err := imapclient.DialStartTLS(e.addr, &imapclient.Options{TLSConfig: e.clientTLS})
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer starttls.Close()
	if err := starttls.Login(alice, password).Wait(); err != nil {
		t.Fatalf("LOGIN after STARTTLS: %v", err)
	}

	implicit, err := imapclient.DialTLS(e.tlsAddr, &imapclient.Options{TLSConfig: e.clientTLS})
	if err != nil {
		t.Fatalf("implicit TLS: %v", err)
	}
	defer implicit.Close()
	if err := implicit.Login(alice, password).Wait(); err != nil {
		t.Fatalf("LOGIN over implicit TLS: %v", err)
	}
}

func TestCapabilitiesAdvertiseExtensionsToIMAP4rev1Clients(t *testing.T) {
	e := newTestEnv(t, withMaxMessageSize(1<<20))
	c := e.login(alice, nil)
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []imap.Cap{
		imap.CapIMAP4rev1, imap.CapIMAP4rev2, imap.CapMove, imap.CapUIDPlus, imap.CapNamespace,
		imap.CapSpecialUse, imap.CapListExtended, imap.CapListStatus, imap.CapChildren,
		imap.CapESearch, imap.CapSearchRes, imap.CapStatusSize, imap.CapLiteralPlus,
		imap.CapIdle, imap.CapUnselect, imap.CapEnable, imap.CapBinary, "APPENDLIMIT=1048576",
		imap.CapCondStore, imap.CapQResync,
		imap.CapMultiAppend, imap.CapQuota, "QUOTA=RES-STORAGE",
	} {
		if !caps.Has(want) {
			t.Errorf("capability %s missing from %v", want, caps)
		}
	}
	if caps.Has("COMPRESS=DEFLATE") {
		t.Errorf("COMPRESS=DEFLATE advertised while it is off (mbsync hangs on it): %v", caps)
	}
}

func TestListShowsSpecialUseChildrenAndSubscriptions(t *testing.T) {
	e := newTestEnv(t)
	c := e.login(alice, nil)
	if err := c.Create("Projects/2024", nil).Wait(); err != nil {
		t.Fatalf("create Projects/2024: %v", err)
	}
	if err := c.Subscribe("Projects/2024").Wait(); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	attrs := make(map[string][]imap.MailboxAttr)
	for _, d := range list {
		if d.Delim != '/' {
			t.Errorf("%s: delimiter %q, want /", d.Mailbox, d.Delim)
		}
		attrs[d.Mailbox] = d.Attrs
	}
	wantAttrs := map[string][]imap.MailboxAttr{
		"INBOX":         {imap.MailboxAttrHasNoChildren},
		"Sent":          {imap.MailboxAttrSent, imap.MailboxAttrHasNoChildren},
		"Drafts":        {imap.MailboxAttrDrafts},
		"Trash":         {imap.MailboxAttrTrash},
		"Projects":      {imap.MailboxAttrHasChildren},
		"Projects/2024": {imap.MailboxAttrHasNoChildren},
	}
	for name, want := range wantAttrs {
		got, ok := attrs[name]
		if !ok {
			t.Errorf("LIST * lacks %s (got %v)", name, attrs)
			continue
		}
		for _, a := range want {
			if !slices.Contains(got, a) {
				t.Errorf("%s: attributes %v lack %s", name, got, a)
			}
		}
	}

	// "%" stops at the delimiter.
	top, err := c.List("", "%", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range top {
		if strings.Contains(d.Mailbox, "/") {
			t.Errorf(`LIST "" %% returned %s`, d.Mailbox)
		}
	}

	// LIST (SUBSCRIBED) and LSUB see only the subscription.
	subs, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var subNames []string
	for _, d := range subs {
		if d.Mailbox == "Projects/2024" && !slices.Contains(d.Attrs, imap.MailboxAttrSubscribed) {
			t.Errorf("subscribed mailbox without \\Subscribed: %v", d.Attrs)
		}
		subNames = append(subNames, d.Mailbox)
	}
	if !slices.Contains(subNames, "Projects/2024") || slices.Contains(subNames, "Projects") {
		t.Errorf("LIST (SUBSCRIBED) = %v", subNames)
	}
	// RFC 3501 6.3.9 (issue 12): LSUB "" % names the unsubscribed parent
	// of a subscribed mailbox, as \Noselect; with "*" the mailbox itself.
	r := e.raw()
	r.ok(fmt.Sprintf("l LOGIN %s %q", alice, password))
	lsub := func(cmd string) []string {
		var out []string
		for _, l := range r.ok(cmd) {
			out = append(out, strings.TrimRight(l, "\r\n"))
		}
		return out
	}
	if got := lsub(`s LSUB "" %`); !slices.Contains(got, `* LSUB (\Noselect) "/" Projects`) {
		t.Errorf("LSUB %% = %q, want Projects as \\Noselect", got)
	}
	if got := lsub(`t LSUB "" *`); slices.ContainsFunc(got, func(l string) bool { return strings.HasSuffix(l, `"/" Projects`) }) ||
		!slices.ContainsFunc(got, func(l string) bool { return strings.HasSuffix(l, "Projects/2024") }) {
		t.Errorf("LSUB * = %q, want Projects/2024 and not its parent", got)
	}

	// SPECIAL-USE selection and LIST-STATUS.
	e.appendMsg(alice, "Sent", testMessage(alice, bob, "sent one", "x"))
	special, err := c.List("", "*", &imap.ListOptions{
		SelectSpecialUse: true,
		ReturnStatus:     &imap.StatusOptions{NumMessages: true, NumUnseen: true},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var specialNames []string
	for _, d := range special {
		specialNames = append(specialNames, d.Mailbox)
		if d.Mailbox == "Sent" {
			if d.Status == nil || d.Status.NumMessages == nil || *d.Status.NumMessages != 1 {
				t.Errorf("LIST-STATUS for Sent: %+v", d.Status)
			}
		}
	}
	slices.Sort(specialNames)
	if want := []string{"Drafts", "Sent", "Trash"}; !slices.Equal(specialNames, want) {
		t.Errorf("LIST (SPECIAL-USE) = %v, want %v", specialNames, want)
	}

	// INBOX matches case-insensitively.
	inbox, err := c.List("", "inbox", nil).Collect()
	if err != nil || len(inbox) != 1 || inbox[0].Mailbox != "INBOX" {
		t.Errorf(`LIST "" inbox = %v, %v`, inbox, err)
	}
}

func TestStatusCountsMessagesUnseenAndSize(t *testing.T) {
	e := newTestEnv(t)
	m1 := testMessage(bob, alice, "one", "first")
	m2 := testMessage(bob, alice, "two", "second")
	e.appendMsg(alice, "INBOX", m1, imap.FlagSeen)
	uid2 := e.appendMsg(alice, "INBOX", m2, imap.FlagDeleted)

	c := e.login(alice, nil)
	st, err := c.Status("INBOX", &imap.StatusOptions{
		NumMessages: true, NumUnseen: true, UIDNext: true, UIDValidity: true, Size: true, NumDeleted: true,
	}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if st.NumMessages == nil || *st.NumMessages != 2 {
		t.Errorf("MESSAGES = %v, want 2", st.NumMessages)
	}
	if st.NumUnseen == nil || *st.NumUnseen != 1 {
		t.Errorf("UNSEEN = %v, want 1", st.NumUnseen)
	}
	if st.UIDNext != uid2+1 {
		t.Errorf("UIDNEXT = %d, want %d", st.UIDNext, uid2+1)
	}
	if st.UIDValidity == 0 {
		t.Error("UIDVALIDITY = 0")
	}
	if want := int64(len(m1) + len(m2)); st.Size == nil || *st.Size != want {
		t.Errorf("SIZE = %v, want %d", st.Size, want)
	}
	if st.NumDeleted == nil || *st.NumDeleted != 1 {
		t.Errorf("DELETED = %v, want 1", st.NumDeleted)
	}
	_, err = c.Status("Nope", &imap.StatusOptions{NumMessages: true}).Wait()
	expectCode(t, err, imap.ResponseCodeNonExistent, "STATUS of a missing mailbox")
}

const multipartMessage = "From: Bob <bob@example.com>\r\n" +
	"To: Alice <alice@example.com>\r\n" +
	"Subject: Report attached\r\n" +
	"Date: Tue, 03 Jan 2006 10:00:00 +0100\r\n" +
	"Message-ID: <report-1@example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
	"\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"The quarterly numbers are in the attachment. Caf=C3=A9 at noon?\r\n" +
	"--b1\r\n" +
	"Content-Type: application/octet-stream; name=\"data.bin\"\r\n" +
	"Content-Disposition: attachment; filename=\"data.bin\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"AAECAwQFBgcICQ==\r\n" +
	"--b1--\r\n"

func TestAppendAndFetchRoundTrip(t *testing.T) {
	e := newTestEnv(t)
	c := e.loginSelect(alice, "INBOX", nil)
	date := time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("", 2*3600))
	raw := []byte(multipartMessage)
	app := c.Append("INBOX", int64(len(raw)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagFlagged}, Time: date})
	if _, err := app.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	appended, err := app.Wait()
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	if appended.UID == 0 || appended.UIDValidity == 0 {
		t.Fatalf("APPENDUID missing: %+v", appended)
	}
	// The EXISTS for our own APPEND arrives before its OK.
	if n := c.Mailbox().NumMessages; n != 1 {
		t.Fatalf("mailbox has %d messages after APPEND, want 1", n)
	}

	uidSet := imap.UIDSetNum(appended.UID)
	m := fetchOne(t, c, uidSet, &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{{Peek: true}},
	})
	if m.UID != appended.UID {
		t.Errorf("UID = %d, want %d", m.UID, appended.UID)
	}
	if !hasFlagIn(m.Flags, imap.FlagFlagged) || hasFlagIn(m.Flags, imap.FlagSeen) {
		t.Errorf("flags = %v, want \\Flagged without \\Seen", m.Flags)
	}
	if !m.InternalDate.Equal(date) {
		t.Errorf("INTERNALDATE = %v, want %v", m.InternalDate, date)
	}
	if m.RFC822Size != int64(len(raw)) {
		t.Errorf("RFC822.SIZE = %d, want %d", m.RFC822Size, len(raw))
	}
	env := m.Envelope
	if env == nil || env.Subject != "Report attached" || env.MessageID != "report-1@example.com" ||
		len(env.From) != 1 || env.From[0].Addr() != bob || env.From[0].Name != "Bob" {
		t.Errorf("ENVELOPE = %+v", env)
	}
	mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || mp.Subtype != "mixed" || len(mp.Children) != 2 {
		t.Fatalf("BODYSTRUCTURE = %#v", m.BodyStructure)
	}
	if part, ok := mp.Children[1].(*imap.BodyStructureSinglePart); !ok || part.Type != "application" || strings.ToLower(part.Encoding) != "base64" {
		t.Errorf("second part = %#v", mp.Children[1])
	}
	if got := m.FindBodySection(&imap.FetchItemBodySection{Peek: true}); !bytes.Equal(got, raw) {
		t.Errorf("BODY.PEEK[] differs from the appended message:\n%q", got)
	}

	// BODY.PEEK[] did not set \Seen.
	m = fetchOne(t, c, uidSet, &imap.FetchOptions{Flags: true})
	if hasFlagIn(m.Flags, imap.FlagSeen) {
		t.Fatalf("BODY.PEEK[] set \\Seen: %v", m.Flags)
	}

	// Sections, partials and BINARY.
	header := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true}
	text1 := &imap.FetchItemBodySection{Part: []int{1}, Peek: true}
	part := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 6, Size: 3}}
	bin := &imap.FetchItemBinarySection{Part: []int{2}, Peek: true}
	m = fetchOne(t, c, uidSet, &imap.FetchOptions{
		BodySection:       []*imap.FetchItemBodySection{header, text1, part},
		BinarySection:     []*imap.FetchItemBinarySection{bin},
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{2}}},
	})
	if got := string(m.FindBodySection(header)); got != "Subject: Report attached\r\n\r\n" {
		t.Errorf("BODY[HEADER.FIELDS (Subject)] = %q", got)
	}
	if got := string(m.FindBodySection(text1)); !strings.Contains(got, "quarterly numbers") {
		t.Errorf("BODY[1] = %q", got)
	}
	if got := string(m.FindBodySection(part)); got != raw2str(raw[6:9]) {
		t.Errorf("BODY[]<6.3> = %q, want %q", got, raw[6:9])
	}
	if got := m.FindBinarySection(bin); !bytes.Equal(got, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Errorf("BINARY[2] = %v", got)
	}
	if n, ok := m.FindBinarySectionSize([]int{2}); !ok || n != 10 {
		t.Errorf("BINARY.SIZE[2] = %d, %v; want 10", n, ok)
	}

	// BODY[] (no PEEK) sets \Seen and says so in the same response.
	full := &imap.FetchItemBodySection{}
	m = fetchOne(t, c, uidSet, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{full}})
	if !hasFlagIn(m.Flags, imap.FlagSeen) {
		t.Errorf("BODY[] response flags = %v, want \\Seen included", m.Flags)
	}
	st, err := c.Status("INBOX", &imap.StatusOptions{NumUnseen: true}).Wait()
	if err != nil || *st.NumUnseen != 0 {
		t.Errorf("UNSEEN after BODY[] = %v, %v; want 0", st.NumUnseen, err)
	}
}

func raw2str(b []byte) string { return string(b) }

func TestAppendToMissingMailboxAsksToCreateIt(t *testing.T) {
	e := newTestEnv(t)
	c := e.login(alice, nil)
	raw := testMessage(alice, bob, "draft", "x")
	app := c.Append("Nowhere", int64(len(raw)), nil)
	app.Write(raw)
	app.Close()
	_, err := app.Wait()
	expectCode(t, err, imap.ResponseCodeTryCreate, "APPEND to a missing mailbox")
}

func TestAppendOverLimitIsRefused(t *testing.T) {
	e := newTestEnv(t, withMaxMessageSize(1024))
	c := e.login(alice, nil)
	raw := testMessage(alice, bob, "big", strings.Repeat("x", 2048))
	app := c.Append("INBOX", int64(len(raw)), nil)
	app.Write(raw)
	app.Close()
	_, err := app.Wait()
	expectCode(t, err, imap.ResponseCodeTooBig, "APPEND over the limit")
	// go-imap's client drops the connection after a refused literal.
	st, err := e.login(alice, nil).Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *st.NumMessages != 0 {
		t.Errorf("after a refused APPEND: MESSAGES = %v, %v", st.NumMessages, err)
	}
}

// Issue 12: \Recent (RFC 3501 2.3.2) belongs to the first session that
// selects the mailbox after the message arrived: RECENT counts it, FETCH
// shows the flag, SEARCH RECENT and NEW find it; EXAMINE leaves it for the
// next SELECT.
func TestRecentBelongsToTheFirstSession(t *testing.T) {
	e := newTestEnv(t)
	for i := range 2 {
		e.appendMsg(alice, "INBOX", testMessage(bob, alice, fmt.Sprint("m", i), "x"))
	}
	login := func() *rawConn {
		r := e.raw()
		r.ok(fmt.Sprintf("l LOGIN %s %q", alice, password))
		return r
	}
	has := func(lines []string, want string) bool {
		return slices.ContainsFunc(lines, func(l string) bool { return strings.TrimRight(l, "\r\n") == want })
	}

	peek := login()
	if got := peek.ok("e EXAMINE INBOX"); !has(got, "* 2 RECENT") {
		t.Errorf("EXAMINE = %q, want * 2 RECENT", got)
	}
	a := login()
	if got := a.ok("s SELECT INBOX"); !has(got, "* 2 RECENT") {
		t.Errorf("first SELECT = %q, want * 2 RECENT (EXAMINE took none)", got)
	}
	if got := a.ok("f FETCH 1 FLAGS"); !has(got, `* 1 FETCH (FLAGS (\Recent))`) {
		t.Errorf("FETCH FLAGS = %q, want \\Recent", got)
	}
	if got := a.ok("r SEARCH NEW"); !has(got, "* SEARCH 1 2") {
		t.Errorf("SEARCH NEW = %q, want both", got)
	}
	b := login()
	if got := b.ok("s SELECT INBOX"); !has(got, "* 0 RECENT") {
		t.Errorf("second SELECT = %q, want * 0 RECENT", got)
	}
	if got := b.ok("r SEARCH RECENT"); !has(got, "* SEARCH") {
		t.Errorf("SEARCH RECENT in the second session = %q, want none", got)
	}

	// A message arriving now is recent for a, which selected first.
	e.appendMsg(alice, "INBOX", testMessage(bob, alice, "m2", "x"))
	a.ok("n NOOP")
	if got := a.ok("r SEARCH RECENT"); !has(got, "* SEARCH 1 2 3") {
		t.Errorf("SEARCH RECENT after a new message = %q, want 1 2 3", got)
	}
	b.ok("n NOOP")
	if got := b.ok("r SEARCH OLD"); !has(got, "* SEARCH 1 2 3") {
		t.Errorf("SEARCH OLD in the second session = %q, want 1 2 3", got)
	}
	if got := peek.ok("t STATUS INBOX (RECENT)"); !has(got, "* STATUS INBOX (RECENT 0)") {
		t.Errorf("STATUS RECENT = %q, want 0 (every message has its session)", got)
	}
}

// Issue 12: keywords in use are announced in FLAGS and PERMANENTFLAGS
// (with \*), and a new one reaches every session as an updated FLAGS.
func TestNewKeywordIsAnnouncedInFLAGS(t *testing.T) {
	e := newTestEnv(t)
	e.appendMsg(alice, "INBOX", testMessage(bob, alice, "m", "x"))
	login := func() *rawConn {
		r := e.raw()
		r.ok(fmt.Sprintf("l LOGIN %s %q", alice, password))
		return r
	}
	has := func(lines []string, want string) bool {
		return slices.ContainsFunc(lines, func(l string) bool { return strings.TrimRight(l, "\r\n") == want })
	}
	const before = `* FLAGS (\Seen \Answered \Flagged \Deleted \Draft)`
	const after = `* FLAGS (\Seen \Answered \Flagged \Deleted \Draft $Work)`
	a, b := login(), login()
	if got := a.ok("s SELECT INBOX"); !has(got, before) {
		t.Fatalf("SELECT = %q, want %s", got, before)
	}
	b.ok("s SELECT INBOX")
	if got := a.ok("t STORE 1 +FLAGS ($Work)"); !has(got, after) {
		t.Errorf("STORE of a new keyword = %q, want %s before the OK", got, after)
	}
	if got := b.ok("n NOOP"); !has(got, after) {
		t.Errorf("the other session's NOOP = %q, want %s", got, after)
	}
	a.ok("o LOGOUT")
	b.ok("o LOGOUT")
	c := login()
	got := c.ok("s SELECT INBOX")
	if !has(got, after) || !has(got, `* OK [PERMANENTFLAGS (\Seen \Answered \Flagged \Deleted \Draft $Work \*)] Permanent flags`) {
		t.Errorf("a later SELECT = %q, want $Work in FLAGS and PERMANENTFLAGS", got)
	}
}

// Issue 12: ENVELOPE keeps address groups (RFC 3501 7.4.2).
func TestEnvelopeKeepsAddressGroups(t *testing.T) {
	e := newTestEnv(t)
	raw := "From: Bob <" + bob + ">\r\nTo: team: a@example.org, b@example.org;, undisclosed-recipients:;\r\n" +
		"Subject: groups\r\n\r\nbody\r\n"
	e.appendMsg(alice, "INBOX", []byte(raw))
	r := e.raw()
	r.ok(fmt.Sprintf("l LOGIN %s %q", alice, password))
	r.ok("s SELECT INBOX")
	got := strings.Join(r.ok("f FETCH 1 ENVELOPE"), "")
	want := `((NIL NIL "team" NIL)(NIL NIL "a" "example.org")(NIL NIL "b" "example.org")(NIL NIL NIL NIL)` +
		`(NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))`
	if !strings.Contains(got, want) {
		t.Errorf("ENVELOPE = %s, want the To groups %s", got, want)
	}
}

func TestStoreChangesFlags(t *testing.T) {
	e := newTestEnv(t)
	for i := range 3 {
		e.appendMsg(alice, "INBOX", testMessage(bob, alice, fmt.Sprint("m", i), "x"))
	}
	c := e.loginSelect(alice, "INBOX", nil)

	msgs, err := c.Store(imap.SeqSetNum(1, 2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Important"}}, nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || !hasFlagIn(msgs[0].Flags, "$Important") || !hasFlagIn(msgs[1].Flags, imap.FlagFlagged) {
		t.Fatalf("STORE +FLAGS responses = %+v", msgs)
	}
	if _, err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsDel, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	silent, err := c.Store(imap.SeqSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsSet, Silent: true, Flags: []imap.Flag{imap.FlagAnswered, imap.FlagDraft}}, nil).Collect()
	if err != nil || len(silent) != 0 {
		t.Fatalf("STORE FLAGS.SILENT = %v, %v; want no FETCH", silent, err)
	}
	all, err := c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]imap.Flag{{imap.FlagFlagged, "$Important"}, {"$Important"}, {imap.FlagAnswered, imap.FlagDraft}}
	for i, m := range all {
		// \Recent is the server's (recent.go), not what STORE set.
		got := slices.DeleteFunc(slices.Clone(m.Flags), func(f imap.Flag) bool { return f == flagRecent })
		if len(got) != len(want[i]) {
			t.Errorf("message %d flags = %v, want %v", i+1, got, want[i])
			continue
		}
		for _, f := range want[i] {
			if !hasFlagIn(got, f) {
				t.Errorf("message %d flags = %v, want %v", i+1, got, want[i])
			}
		}
	}

	// UID STORE reports UIDs.
	uidMsgs, err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Collect()
	if err != nil || len(uidMsgs) != 1 || uidMsgs[0].UID != 1 {
		t.Errorf("UID STORE = %+v, %v", uidMsgs, err)
	}
}

func TestSearchCoversHeadersBodyFlagsUIDsAndLogic(t *testing.T) {
	e := newTestEnv(t)
	u1 := e.appendMsg(alice, "INBOX", testMessage("carol@example.com", alice, "Lunch plans", "Shall we meet at the noodle bar?"), imap.FlagSeen)
	u2 := e.appendMsg(alice, "INBOX", []byte(multipartMessage))
	u3 := e.appendMsg(alice, "INBOX", testMessage("dave@example.com", alice, "Invoice 42", strings.Repeat("amount due ", 200)), imap.FlagFlagged)
	c := e.loginSelect(alice, "INBOX", nil)

	uidSearch := func(what string, crit *imap.SearchCriteria, want ...imap.UID) {
		t.Helper()
		data, err := c.UIDSearch(crit, nil).Wait()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := data.AllUIDs(); !slices.Equal(got, want) {
			t.Errorf("%s: UIDs %v, want %v", what, got, want)
		}
	}
	uidSearch("FROM", &imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "CAROL"}}}, u1)
	uidSearch("SUBJECT", &imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "invoice"}}}, u3)
	uidSearch("HEADER Message-ID", &imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: "report-1"}}}, u2)
	uidSearch("BODY in quoted-printable", &imap.SearchCriteria{Body: []string{"café"}}, u2)
	uidSearch("BODY", &imap.SearchCriteria{Body: []string{"NOODLE"}}, u1)
	uidSearch("BODY not in header", &imap.SearchCriteria{Body: []string{"Lunch plans"}})
	uidSearch("TEXT in header", &imap.SearchCriteria{Text: []string{"lunch PLANS"}}, u1)
	uidSearch("SEEN", &imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, u1)
	uidSearch("UNSEEN", &imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, u2, u3)
	uidSearch("FLAGGED", &imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, u3)
	uidSearch("UID range", &imap.SearchCriteria{UID: []imap.UIDSet{{{Start: u2, Stop: 0}}}}, u2, u3)
	uidSearch("seq range", &imap.SearchCriteria{SeqNum: []imap.SeqSet{imap.SeqSetNum(1, 3)}}, u1, u3)
	uidSearch("NOT", &imap.SearchCriteria{Not: []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagSeen}}}}, u2, u3)
	uidSearch("OR", &imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{
		{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "carol"}}},
		{Flag: []imap.Flag{imap.FlagFlagged}},
	}}}, u1, u3)
	uidSearch("LARGER", &imap.SearchCriteria{Larger: 1500}, u3)
	uidSearch("SENTBEFORE", &imap.SearchCriteria{SentBefore: time.Date(2006, 1, 3, 0, 0, 0, 0, time.UTC)}, u1, u3)
	uidSearch("SENTON", &imap.SearchCriteria{SentSince: time.Date(2006, 1, 3, 0, 0, 0, 0, time.UTC), SentBefore: time.Date(2006, 1, 4, 0, 0, 0, 0, time.UTC)}, u2)
	today := time.Now()
	uidSearch("SINCE today", &imap.SearchCriteria{Since: time.Date(today.Year(), today.Month(), today.Day()-1, 0, 0, 0, 0, time.UTC)}, u1, u2, u3)
	uidSearch("BEFORE 2000", &imap.SearchCriteria{Before: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)})
	uidSearch("ALL", &imap.SearchCriteria{}, u1, u2, u3)

	// Sequence-number SEARCH and ESEARCH return options.
	data, err := c.Search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil || !slices.Equal(data.AllSeqNums(), []uint32{2, 3}) {
		t.Errorf("SEARCH UNSEEN = %v, %v", data, err)
	}
	data, err = c.UIDSearch(&imap.SearchCriteria{}, &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait()
	if err != nil || data.Min != uint32(u1) || data.Max != uint32(u3) || data.Count != 3 {
		t.Errorf("ESEARCH MIN MAX COUNT = %+v, %v", data, err)
	}

	// SEARCHRES (RFC 5182): go-imap's client cannot send SAVE, so by hand.
	raw := e.raw()
	raw.ok(`s1 LOGIN "` + alice + `" "` + password + `"`)
	raw.ok("s2 SELECT INBOX")
	raw.ok("s3 UID SEARCH RETURN (SAVE) FLAGGED")
	fetched := raw.ok("s4 UID FETCH $ (FLAGS)")
	if want := fmt.Sprintf("* 3 FETCH (UID %d FLAGS (\\Flagged))\r\n", u3); len(fetched) != 1 || fetched[0] != want {
		t.Errorf("UID FETCH $ = %q, want %q", fetched, want)
	}
}

func TestCopyAndMoveReportCOPYUID(t *testing.T) {
	e := newTestEnv(t)
	for i := range 3 {
		e.appendMsg(alice, "INBOX", testMessage(bob, alice, fmt.Sprint("msg ", i), "x"))
	}
	if err := e.store.CreateMailbox(context.Background(), alice, "Archive"); err != nil {
		t.Fatal(err)
	}
	c := e.loginSelect(alice, "INBOX", nil)

	copied, err := c.Copy(imap.SeqSetNum(1, 2), "Archive").Wait()
	if err != nil {
		t.Fatalf("COPY: %v", err)
	}
	if src, _ := copied.SourceUIDs.Nums(); !slices.Equal(src, []imap.UID{1, 2}) {
		t.Errorf("COPYUID source = %v", copied.SourceUIDs)
	}
	if dst, _ := copied.DestUIDs.Nums(); len(dst) != 2 || copied.UIDValidity == 0 {
		t.Errorf("COPYUID dest = %v validity %d", copied.DestUIDs, copied.UIDValidity)
	}

	u, opts := newUpdates()
	c2 := e.loginSelect(alice, "INBOX", opts)
	moved, err := c2.Move(imap.UIDSetNum(3), "Trash").Wait()
	if err != nil {
		t.Fatalf("MOVE: %v", err)
	}
	if moved.SourceUIDs == nil || moved.SourceUIDs.String() != "3" || moved.UIDValidity == 0 {
		t.Errorf("MOVE COPYUID = %+v", moved)
	}
	if seq := waitFor(t, u.expunges, "EXPUNGE after MOVE"); seq != 3 {
		t.Errorf("MOVE expunged seq %d, want 3", seq)
	}
	for name, want := range map[string]uint32{"INBOX": 2, "Archive": 2, "Trash": 1} {
		st, err := c2.Status(name, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || *st.NumMessages != want {
			t.Errorf("%s: MESSAGES = %v, %v; want %d", name, st.NumMessages, err, want)
		}
	}
	_, err = c2.Copy(imap.SeqSetNum(1), "Missing").Wait()
	expectCode(t, err, imap.ResponseCodeTryCreate, "COPY to a missing mailbox")
	_, err = c2.Move(imap.SeqSetNum(1), "Missing").Wait()
	expectCode(t, err, imap.ResponseCodeTryCreate, "MOVE to a missing mailbox")
}

// Issue 12: MOVE into the selected mailbox succeeds with COPYUID; the
// message gets a new UID and is still there once.
func TestMoveIntoTheSameMailboxRenumbers(t *testing.T) {
	e := newTestEnv(t)
	for i := range 2 {
		e.appendMsg(alice, "INBOX", testMessage(bob, alice, fmt.Sprint("msg ", i), "x"))
	}
	c := e.loginSelect(alice, "INBOX", nil)
	moved, err := c.Move(imap.UIDSetNum(1), "INBOX").Wait()
	if err != nil {
		t.Fatalf("MOVE 1 INBOX: %v", err)
	}
	if moved.SourceUIDs.String() != "1" || moved.DestUIDs.String() != "3" {
		t.Errorf("COPYUID = %v -> %v, want 1 -> 3", moved.SourceUIDs, moved.DestUIDs)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var uids []imap.UID
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}
	if !slices.Equal(uids, []imap.UID{2, 3}) {
		t.Errorf("UIDs after the move = %v, want [2 3]", uids)
	}
}

func TestExpungeRemovesOnlyDeletedMessages(t *testing.T) {
	e := newTestEnv(t)
	for i := range 5 {
		e.appendMsg(alice, "INBOX", testMessage(bob, alice, fmt.Sprint("msg ", i), "x"))
	}
	c := e.loginSelect(alice, "INBOX", nil)
	if err := c.Store(imap.SeqSetNum(2, 4, 5), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	// UID EXPUNGE removes only the named \Deleted message.
	seqs, err := c.UIDExpunge(imap.UIDSetNum(1, 2)).Collect()
	if err != nil || !slices.Equal(seqs, []uint32{2}) {
		t.Fatalf("UID EXPUNGE 1:2 = %v, %v; want [2]", seqs, err)
	}
	// EXPUNGE reports the rest in order, each number relative to the
	// mailbox after the previous one (RFC 3501 7.4.1).
	seqs, err = c.Expunge().Collect()
	if err != nil || !slices.Equal(seqs, []uint32{3, 3}) {
		t.Fatalf("EXPUNGE = %v, %v; want [3 3]", seqs, err)
	}
	left, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(left) != 2 || left[0].UID != 1 || left[1].UID != 3 {
		t.Errorf("left after expunge: %+v, %v", left, err)
	}
}

// TestExpungeInOtherSessionKeepsSequenceNumbersRight is the classic
// renumbering bug: session B must keep addressing messages by the numbers
// it was told until it is told about the expunge.
func TestExpungeInOtherSessionKeepsSequenceNumbersRight(t *testing.T) {
	e := newTestEnv(t)
	subjects := []string{"one", "two", "three"}
	for _, s := range subjects {
		e.appendMsg(alice, "INBOX", testMessage(bob, alice, s, "x"))
	}
	a := e.loginSelect(alice, "INBOX", nil)
	u, opts := newUpdates()
	b := e.loginSelect(alice, "INBOX", opts)

	if err := a.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if seqs, err := a.Expunge().Collect(); err != nil || !slices.Equal(seqs, []uint32{2}) {
		t.Fatalf("A: EXPUNGE = %v, %v", seqs, err)
	}

	// B has not polled: message 3 is still "three" to it, and FETCH must
	// not send the EXPUNGE (RFC 3501 7.4.1).
	m := fetchOne(t, b, imap.SeqSetNum(3), &imap.FetchOptions{UID: true, Envelope: true})
	if m.SeqNum != 3 || m.UID != 3 || m.Envelope.Subject != "three" {
		t.Fatalf("B: FETCH 3 = seq %d uid %d %q; want seq 3 uid 3 \"three\"", m.SeqNum, m.UID, m.Envelope.Subject)
	}
	expectNone(t, u.expunges, "EXPUNGE during FETCH")

	if err := b.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if seq := waitFor(t, u.expunges, "EXPUNGE after NOOP"); seq != 2 {
		t.Fatalf("B: got * %d EXPUNGE, want * 2 EXPUNGE", seq)
	}
	m = fetchOne(t, b, imap.SeqSetNum(2), &imap.FetchOptions{UID: true, Envelope: true})
	if m.UID != 3 || m.Envelope.Subject != "three" {
		t.Fatalf("B: after renumbering FETCH 2 = uid %d %q; want uid 3 \"three\"", m.UID, m.Envelope.Subject)
	}
	if msgs, err := b.Fetch(imap.SeqSetNum(3), &imap.FetchOptions{UID: true}).Collect(); err != nil || len(msgs) != 0 {
		t.Fatalf("B: FETCH 3 after renumbering = %+v, %v; want nothing", msgs, err)
	}
}

func TestIdleShowsDeliveriesFlagChangesAndExpungesLive(t *testing.T) {
	e := newTestEnv(t)
	e.appendMsg(alice, "INBOX", testMessage(bob, alice, "old", "x"))
	u, opts := newUpdates()
	c := e.loginSelect(alice, "INBOX", opts)
	idle, err := c.Idle()
	if err != nil {
		t.Fatalf("IDLE: %v", err)
	}

	// A delivery from SMTP arrives as a storage event.
	delivered := make(chan error, 1)
	go func() {
		_, err := e.store.Deliver(context.Background(), &storage.Delivery{
			Recipients: []string{alice},
			Copy:       &storage.NewMessage{Raw: testMessage(bob, alice, "new", "hello")},
		})
		delivered <- err
	}()
	if err := waitFor(t, delivered, "delivery"); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if n := waitFor(t, u.exists, "EXISTS during IDLE"); n != 2 {
		t.Fatalf("EXISTS %d, want 2", n)
	}

	// Another session flags and expunges.
	other := e.loginSelect(alice, "INBOX", nil)
	if err := other.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	f := waitFor(t, u.fetches, "FETCH FLAGS during IDLE")
	if f.SeqNum != 2 || !hasFlagIn(f.Flags, imap.FlagFlagged) {
		t.Errorf("IDLE FETCH = seq %d flags %v", f.SeqNum, f.Flags)
	}
	if err := other.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, u.fetches, "FETCH FLAGS \\Deleted during IDLE")
	if err := other.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	if seq := waitFor(t, u.expunges, "EXPUNGE during IDLE"); seq != 1 {
		t.Errorf("IDLE EXPUNGE %d, want 1", seq)
	}

	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatalf("IDLE ended with %v", err)
	}
	m := fetchOne(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true})
	if m.Envelope.Subject != "new" {
		t.Errorf("after IDLE, message 1 is %q, want \"new\"", m.Envelope.Subject)
	}
}

func TestOwnFlagChangesAreNotEchoed(t *testing.T) {
	e := newTestEnv(t)
	e.appendMsg(alice, "INBOX", testMessage(bob, alice, "one", "x"))
	c := e.raw()
	c.ok(`a1 LOGIN "` + alice + `" "` + password + `"`)
	c.ok("a2 SELECT INBOX")
	if untagged := c.ok(`a3 STORE 1 +FLAGS.SILENT (\Flagged)`); len(untagged) != 0 {
		t.Errorf("STORE .SILENT wrote %q", untagged)
	}
	// Another session's change commits after ours, so its update is queued
	// after any echo of ours would be: the first FETCH this connection
	// sees must be the other session's.
	other := e.loginSelect(alice, "INBOX", nil)
	if err := other.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	c.send("a4 IDLE")
	c.expect("+ ")
	fetch := c.expect("* 1 FETCH")
	if !strings.Contains(fetch, `\Answered`) {
		t.Errorf("first FETCH after our own STORE is %q: an echo of it", fetch)
	}
	c.send("DONE")
	c.expect("a4 OK")
}

func TestCreateRenameDeleteAndProtectedFolders(t *testing.T) {
	e := newTestEnv(t)
	c := e.login(alice, nil)
	if err := c.Create("Work/", nil).Wait(); err != nil {
		t.Fatalf("CREATE Work/: %v", err)
	}
	expectCode(t, c.Create("Work", nil).Wait(), imap.ResponseCodeAlreadyExists, "CREATE of an existing mailbox")
	expectCode(t, c.Create("inbox", nil).Wait(), imap.ResponseCodeAlreadyExists, "CREATE inbox")
	if err := c.Rename("Work", "Job", nil).Wait(); err != nil {
		t.Fatalf("RENAME: %v", err)
	}
	_, err := c.Select("Work", nil).Wait()
	expectCode(t, err, imap.ResponseCodeNonExistent, "SELECT of the old name")
	if _, err := c.Select("Job", nil).Wait(); err != nil {
		t.Fatalf("SELECT of the new name: %v", err)
	}
	for _, name := range []string{"INBOX", "Sent", "Drafts", "Trash"} {
		expectCode(t, c.Delete(name).Wait(), imap.ResponseCodeCannot, "DELETE "+name)
		expectCode(t, c.Rename(name, name+"2", nil).Wait(), imap.ResponseCodeCannot, "RENAME "+name)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Job").Wait(); err != nil {
		t.Fatalf("DELETE Job: %v", err)
	}
	expectCode(t, c.Delete("Job").Wait(), imap.ResponseCodeNonExistent, "DELETE twice")
	if ns, err := c.Namespace().Wait(); err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' || ns.Personal[0].Prefix != "" {
		t.Errorf("NAMESPACE = %+v, %v", ns, err)
	}
}

func TestDeletingSelectedMailboxEndsOtherSessions(t *testing.T) {
	e := newTestEnv(t)
	if err := e.store.CreateMailbox(context.Background(), alice, "Doomed"); err != nil {
		t.Fatal(err)
	}
	victim := e.loginSelect(alice, "Doomed", nil)
	c := e.login(alice, nil)
	if err := c.Delete("Doomed").Wait(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-victim.Closed():
	case <-time.After(waitLimit):
		t.Fatal("session with the deleted mailbox selected was not ended")
	}
}

func TestUsersCannotReachEachOthersMailboxes(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	if err := e.store.CreateMailbox(ctx, alice, "Private"); err != nil {
		t.Fatal(err)
	}
	e.appendMsg(alice, "Private", testMessage(alice, alice, "secret", "x"))
	e.appendMsg(alice, "INBOX", testMessage(alice, alice, "secret inbox", "x"))

	c := e.login(bob, nil)
	for _, name := range []string{"Private", "../alice@example.com/Private", "alice@example.com/Private", "/Private"} {
		if _, err := c.Select(name, nil).Wait(); err == nil {
			t.Errorf("bob selected %q", name)
		}
		if _, err := c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait(); err == nil {
			t.Errorf("bob got STATUS of %q", name)
		}
		raw := testMessage(bob, alice, "planted", "x")
		app := c.Append(name, int64(len(raw)), nil)
		app.Write(raw)
		app.Close()
		if _, err := app.Wait(); err == nil {
			t.Errorf("bob appended to %q", name)
		}
	}
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *st.NumMessages != 0 {
		t.Errorf("bob's INBOX: %v messages, %v; want his own (0)", st.NumMessages, err)
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range list {
		if d.Mailbox == "Private" {
			t.Errorf("bob's LIST shows alice's folder")
		}
	}
	// Alice's mailbox is untouched.
	ast, err := e.store.MailboxStatus(ctx, alice, "Private")
	if err != nil || ast.Messages != 1 {
		t.Errorf("alice's Private: %+v, %v", ast, err)
	}
}

func TestExamineIsReadOnly(t *testing.T) {
	e := newTestEnv(t)
	e.appendMsg(alice, "INBOX", testMessage(bob, alice, "one", "x"), imap.FlagDeleted)
	c := e.login(alice, nil)
	data, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(data.PermanentFlags) != 0 {
		t.Errorf("EXAMINE PERMANENTFLAGS = %v, want ()", data.PermanentFlags)
	}
	err = c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close()
	expectCode(t, err, imap.ResponseCodeCannot, "STORE in EXAMINE")
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatalf("EXPUNGE in EXAMINE: %v", err)
	}
	m := fetchOne(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true, BodySection: []*imap.FetchItemBodySection{{}}})
	if hasFlagIn(m.Flags, imap.FlagSeen) {
		t.Errorf("BODY[] in EXAMINE reported \\Seen: %v", m.Flags)
	}
	if err := c.UnselectAndExpunge().Wait(); err != nil { // CLOSE
		t.Fatalf("CLOSE after EXAMINE: %v", err)
	}
	st, err := e.store.MailboxStatus(context.Background(), alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 1 || st.Unseen != 1 {
		t.Errorf("after EXAMINE: %d messages, %d unseen; want 1 and 1", st.Messages, st.Unseen)
	}
	ms, err := e.store.Messages(context.Background(), alice, st.ID, []imap.UID{1}, storage.LoadOptions{})
	if err != nil || len(ms) != 1 || hasFlagIn(ms[0].Flags, imap.FlagFlagged) {
		t.Errorf("after EXAMINE STORE: %+v, %v", ms, err)
	}
}

func TestMalformedCommandsGetBADAndTheSessionGoesOn(t *testing.T) {
	e := newTestEnv(t)
	c := e.raw()
	c.ok(`a1 LOGIN "` + alice + `" "` + password + `"`)
	for i, bad := range []string{
		"a2 FETCH",
		"a3 SELECT",
		"a4 STATUS INBOX (BOGUS)",
		"a5 SEARCH (",
		"a6 FROBNICATE",
		"a7 FETCH 1:* (BODY[999.1.HEADER.FIELDS (x)])",
		"a8 STORE 1 +FLAGS (\\Seen",
	} {
		tag := strings.Fields(bad)[0]
		c.send(bad)
		if resp := c.expect(tag + " "); !strings.HasPrefix(resp, tag+" BAD") && !strings.HasPrefix(resp, tag+" NO") {
			t.Errorf("%d: %q got %q, want BAD or NO", i, bad, resp)
		}
	}
	c.ok("a9 NOOP")
}

// panicStore injects a panic into one storage read to check the recovery.
type panicStore struct {
	storage.Store
}

func (p panicStore) Messages(ctx context.Context, user string, id uint64, uids []imap.UID, opts storage.LoadOptions) ([]*storage.Message, error) {
	if opts.Envelope {
		panic("injected failure")
	}
	return p.Store.Messages(ctx, user, id, uids, opts)
}

func TestPanicInOneSessionLeavesOthersServed(t *testing.T) {
	e := newTestEnv(t, withStoreWrapper(func(s storage.Store) storage.Store { return panicStore{s} }))
	e.appendMsg(alice, "INBOX", testMessage(bob, alice, "one", "x"))
	victim := e.loginSelect(alice, "INBOX", nil)
	bystander := e.loginSelect(alice, "INBOX", nil)

	if _, err := victim.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect(); err == nil {
		t.Fatal("FETCH ENVELOPE succeeded despite the injected panic")
	}
	select {
	case <-victim.Closed():
	case <-time.After(waitLimit):
		t.Fatal("connection with the panic was not closed")
	}
	if got := e.metrics.panics.Load(); got != 1 {
		t.Errorf("panics counted = %d, want 1", got)
	}
	// The other session, the mailbox state and new connections still work.
	m := fetchOne(t, bystander, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true, UID: true})
	if m.UID != 1 {
		t.Errorf("bystander FETCH = %+v", m)
	}
	fresh := e.loginSelect(alice, "INBOX", nil)
	if err := fresh.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestCloseSaysByeToConnectedClients(t *testing.T) {
	e := newTestEnv(t)
	c := e.loginSelect(alice, "INBOX", nil)
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Closed():
	case <-time.After(waitLimit):
		t.Fatal("client not disconnected by Close")
	}
	if _, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
		t.Error("listener still accepts after Close")
	}
}

func TestIMAP4rev2ClientGetsListOnSelectAndESearch(t *testing.T) {
	e := newTestEnv(t)
	e.appendMsg(alice, "Sent", testMessage(alice, bob, "one", "x"))
	c := e.raw()
	c.ok(`a1 LOGIN "` + alice + `" "` + password + `"`)
	if got := c.ok("a2 ENABLE IMAP4rev2"); len(got) != 1 || !strings.HasPrefix(got[0], "* ENABLED IMAP4rev2") {
		t.Fatalf("ENABLE = %q", got)
	}
	var list string
	for _, line := range c.ok("a3 SELECT Sent") {
		if strings.HasPrefix(line, "* LIST") {
			list = line
		}
		if strings.Contains(line, "RECENT") {
			t.Errorf("IMAP4rev2 SELECT sent %q", line)
		}
	}
	if !strings.Contains(list, `\Sent`) || !strings.Contains(list, `"Sent"`) && !strings.Contains(list, " Sent") {
		t.Errorf("SELECT LIST response = %q", list)
	}
	if got := c.ok("a4 SEARCH ALL"); len(got) != 1 || got[0] != "* ESEARCH (TAG \"a4\") ALL 1\r\n" {
		t.Errorf("SEARCH under IMAP4rev2 = %q", got)
	}
}

func TestDeletedUsersSessionsGetByeAndClose(t *testing.T) {
	e := newTestEnv(t)
	selected := e.raw()
	selected.ok(`a1 LOGIN "` + bob + `" "` + password + `"`)
	selected.ok("a2 SELECT INBOX")
	idle := e.raw()
	idle.ok(`b1 LOGIN "` + bob + `" "` + password + `"`)
	idle.send("b2 IDLE")
	idle.expect("+ ")
	other := e.raw()
	other.ok(`c1 LOGIN "` + alice + `" "` + password + `"`)

	if err := e.store.DeleteUser(context.Background(), bob); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { e.srv.EndUserSessions(bob); close(done) }()
	for name, c := range map[string]*rawConn{"selected": selected, "idling": idle} {
		if line := c.expect("* BYE"); !strings.Contains(line, "deleted") {
			t.Errorf("%s session: %q", name, line)
		}
		if line, err := c.r.ReadString('\n'); err == nil {
			t.Errorf("%s session still open after BYE: read %q", name, line)
		}
	}
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("EndUserSessions did not return")
	}
	// Another user's session is untouched.
	other.ok("c2 NOOP")
}
