package config

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf16"
)

func importFile(t *testing.T, name string) *Import {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	im, err := ImportXML(name, data)
	if err != nil {
		t.Fatalf("ImportXML(%s): %v", name, err)
	}
	return im
}

// hasLine reports whether one of lines contains every part.
func hasLine(lines []string, parts ...string) bool {
	for _, l := range lines {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return true
		}
	}
	return false
}

func TestImportXMLMapsTheSeedQueueAndLimitSettings(t *testing.T) {
	im := importFile(t, "config-seed.xml")
	c := im.Config
	if !c.EmailQueue.Enabled || c.EmailLimit.SystemLimit != 1000 || c.EmailLimit.UserLimit != 2000 {
		t.Errorf("enabled %v, system_limit %d, user_limit %d; want true, 1000, 2000",
			c.EmailQueue.Enabled, c.EmailLimit.SystemLimit, c.EmailLimit.UserLimit)
	}
	if got := im.Sources["email_limit.system_limit"]; got != "config-seed.xml:9 <Configuration/EmailLimit/SystemLimit>" {
		t.Errorf("source of system_limit = %q", got)
	}
	want := "config-seed.xml:13: <Configuration/Database/ConnectionString> is not known; ignored"
	if !hasLine(im.Warnings, want) {
		t.Errorf("warnings %q lack %q", im.Warnings, want)
	}
	if !hasLine(im.Warnings, "no SMTP relay settings found") {
		t.Errorf("warnings %q do not say the relay was not found", im.Warnings)
	}
	// Everything not in the file keeps its default.
	if c.EmailQueue.Relay != Defaults().EmailQueue.Relay || c.Hostname != Defaults().Hostname {
		t.Errorf("relay %q hostname %q are not the defaults", c.EmailQueue.Relay, c.Hostname)
	}
}

func TestImportXMLFindsSMTPSettingsInsideTheQueue(t *testing.T) {
	im := importFile(t, "config-smtp.xml")
	q := im.Config.EmailQueue
	if q.Relay != "smtp.corp.test:465" || q.RelayTLS != RelayTLS {
		t.Errorf("relay %q tls %q, want smtp.corp.test:465 tls", q.Relay, q.RelayTLS)
	}
	if q.RelayUsername != "office-mailer@corp.test" || q.RelayPassword != `s3cret & "quoted"` {
		t.Errorf("username %q password %q", q.RelayUsername, q.RelayPassword)
	}
	if im.Config.EmailLimit.UserLimit != 500 || im.Config.EmailLimit.SystemLimit != 0 {
		t.Errorf("limits %+v", im.Config.EmailLimit)
	}
	for _, w := range []string{
		"config-smtp.xml:4: <SmartOffice/@version> is not known; ignored",
		"config-smtp.xml:6: <SmartOffice/Server/Name> is not known; ignored",
		"config-smtp.xml:15: <SmartOffice/Server/EmailQueue/SmtpServer/FromAddress> is not known; ignored",
		"config-smtp.xml:22: <SmartOffice/Server/Logging/@level> is not known; ignored",
	} {
		if !hasLine(im.Warnings, w) {
			t.Errorf("warnings lack %q:\n%s", w, strings.Join(im.Warnings, "\n"))
		}
	}
	if !hasLine(im.Warnings, "relay password is copied", "relay_password_file") {
		t.Errorf("no note about the copied password: %q", im.Warnings)
	}
	for _, w := range im.Warnings {
		if strings.Contains(w, "s3cret") {
			t.Errorf("a warning shows the password: %q", w)
		}
	}
}

func TestImportXMLReadsAttributesAddEntriesAndDeclaredEncodings(t *testing.T) {
	im := importFile(t, "config-appsettings.xml")
	q := im.Config.EmailQueue
	if q.Enabled || q.Relay != "relay.corp.test:587" || q.RelayTLS != RelayStartTLS || q.RelayUsername != "почта" {
		t.Errorf("queue %+v", q)
	}
	if im.Config.EmailLimit.UserLimit != 300 {
		t.Errorf("user_limit %d, want 300", im.Config.EmailLimit.UserLimit)
	}
	if !hasLine(im.Warnings, "config-appsettings.xml:10:", "ReportTitle", "is not known; ignored") {
		t.Errorf("warnings lack ReportTitle: %q", im.Warnings)
	}
}

func TestImportXMLOutputLoadsBackAsTheSameConfig(t *testing.T) {
	for _, name := range []string{"config-seed.xml", "config-smtp.xml", "config-appsettings.xml"} {
		im := importFile(t, name)
		var b strings.Builder
		if err := im.WriteTOML(&b); err != nil {
			t.Fatalf("%s: WriteTOML: %v", name, err)
		}
		out := b.String()
		cfg, err := Parse("imported.toml", []byte(out))
		if err != nil {
			t.Fatalf("%s: the printed TOML does not load: %v\n%s", name, err, out)
		}
		if got, want := plain(cfg), plain(im.Config); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: loads back as\n%+v\nwant\n%+v", name, got, want)
		}
		// Every key is written, so the operator sees the whole file.
		lines := keyLines(out)
		for section, fields := range sectionFields {
			for key := range fields {
				path := key
				if section != "" {
					path = section + "." + key
				}
				if _, ok := lines[path]; !ok {
					t.Errorf("%s: output lacks %s", name, displayKey(path))
				}
			}
		}
		for key, src := range im.Sources {
			if !strings.Contains(out, "  # from "+src+"\n") {
				t.Errorf("%s: %s is not marked as coming from %s", name, key, src)
			}
		}
	}
}

func TestImportXMLInvalidXMLNamesFileAndLine(t *testing.T) {
	data, err := os.ReadFile("testdata/bad-unclosed.xml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ImportXML("bad-unclosed.xml", data)
	if err == nil || !strings.HasPrefix(err.Error(), "bad-unclosed.xml:5: invalid XML: ") {
		t.Fatalf("err = %v, want bad-unclosed.xml:5: invalid XML: ...", err)
	}
	for _, text := range []string{"", "   \n", "not xml at all", "<a></a><b></b>"} {
		if _, err := ImportXML("x.xml", []byte(text)); err == nil || !strings.Contains(err.Error(), "invalid XML") {
			t.Errorf("ImportXML(%q) err = %v, want invalid XML", text, err)
		}
	}
}

func TestImportXMLBadValuesAreAllReportedWithTheirLines(t *testing.T) {
	data, err := os.ReadFile("testdata/bad-values.xml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ImportXML("bad-values.xml", data)
	got := errorLines(err)
	want := []string{
		`bad-values.xml:3: <Configuration/EmailQueue/Enabled>: "maybe" is not true or false`,
		`bad-values.xml:5: <Configuration/EmailLimit/SystemLimit>: -5 must not be negative (0 means no limit)`,
		`bad-values.xml:6: <Configuration/EmailLimit/UserLimit>: "lots" is not a whole number`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, bad := range []string{
		`<c><Smtp><Host>smtp.x.test</Host><Port>70000</Port></Smtp></c>`,
		`<c><Smtp><Host>smtp.x.test</Host><Ssl>sometimes</Ssl></Smtp></c>`,
		`<c><Smtp><Host>a host</Host></Smtp></c>`,
	} {
		if _, err := ImportXML("x.xml", []byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "x.xml:1: <c/Smtp/") {
			t.Errorf("ImportXML(%s) err = %v, want x.xml:1: <c/Smtp/...>", bad, err)
		}
	}
}

func TestImportXMLMatchesNamesWhateverTheirCase(t *testing.T) {
	im, err := ImportXML("x.xml", []byte(`<settings>
<email_queue><ENABLED>no</ENABLED></email_queue>
<emailLimit userlimit=" 42 "/>
<SMTPHOST>mx.corp.test:2525</SMTPHOST>
</settings>`))
	if err != nil {
		t.Fatal(err)
	}
	c := im.Config
	if c.EmailQueue.Enabled || c.EmailLimit.UserLimit != 42 || c.EmailQueue.Relay != "mx.corp.test:2525" || c.EmailQueue.RelayTLS != RelayStartTLS {
		t.Errorf("enabled %v user_limit %d relay %q tls %q", c.EmailQueue.Enabled, c.EmailLimit.UserLimit, c.EmailQueue.Relay, c.EmailQueue.RelayTLS)
	}
	if len(im.Warnings) != 0 {
		t.Errorf("unexpected warnings %q", im.Warnings)
	}
}

func TestImportXMLWarnsWhenASettingIsGivenTwice(t *testing.T) {
	im, err := ImportXML("x.xml", []byte("<c>\n<SmtpServer>old.test</SmtpServer>\n<Smtp><Host>new.test</Host></Smtp>\n</c>"))
	if err != nil {
		t.Fatal(err)
	}
	if im.Config.EmailQueue.Relay != "new.test:25" {
		t.Errorf("relay %q, want the later new.test:25", im.Config.EmailQueue.Relay)
	}
	if !hasLine(im.Warnings, "x.xml:3: <c/Smtp/Host> sets smtp host again (first set at line 2)") {
		t.Errorf("warnings %q", im.Warnings)
	}
}

func TestImportXMLPlainSMTPWithLoginWarnsAboutTheUnencryptedPassword(t *testing.T) {
	im, err := ImportXML("x.xml", []byte(`<c><Smtp><Host>relay.test</Host><UseSsl>false</UseSsl><User>u</User></Smtp></c>`))
	if err != nil {
		t.Fatal(err)
	}
	if im.Config.EmailQueue.RelayTLS != RelayNoTLS || im.Config.EmailQueue.Relay != "relay.test:25" {
		t.Errorf("relay %q tls %q", im.Config.EmailQueue.Relay, im.Config.EmailQueue.RelayTLS)
	}
	if !hasLine(im.Warnings, "unencrypted") {
		t.Errorf("no warning about the unencrypted password: %q", im.Warnings)
	}
}

func TestImportXMLReadsUTF16WithByteOrderMark(t *testing.T) {
	data, err := os.ReadFile("testdata/config-seed.xml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), `encoding="utf-8"`, `encoding="utf-16"`, 1)
	units := utf16.Encode([]rune(text))
	buf := []byte{0xFF, 0xFE}
	for _, u := range units {
		buf = binary.LittleEndian.AppendUint16(buf, u)
	}
	im, err := ImportXML("utf16.xml", buf)
	if err != nil {
		t.Fatal(err)
	}
	if im.Config.EmailLimit.SystemLimit != 1000 || im.Sources["email_limit.system_limit"] != "utf16.xml:9 <Configuration/EmailLimit/SystemLimit>" {
		t.Errorf("system_limit %d from %q", im.Config.EmailLimit.SystemLimit, im.Sources["email_limit.system_limit"])
	}
}

func TestRelayTLSModeFollowsThePortForPlainOnOff(t *testing.T) {
	for _, tc := range []struct {
		value string
		port  int
		want  string
	}{
		{"true", 465, RelayTLS},
		{"True", 587, RelayStartTLS},
		{"SSL", 465, RelayTLS},
		{"SSL/TLS", 25, RelayStartTLS},
		{"STARTTLS", 465, RelayStartTLS},
		{"Implicit", 2465, RelayTLS},
		{"false", 465, RelayNoTLS},
		{"None", 25, RelayNoTLS},
	} {
		got, ok := relayTLSMode(tc.value, tc.port)
		if !ok || got != tc.want {
			t.Errorf("relayTLSMode(%q, %d) = %q, %v; want %q", tc.value, tc.port, got, ok, tc.want)
		}
	}
}

func TestImportXMLRefusesDeepNestingQuicklyNamingTheLine(t *testing.T) {
	const depth = 200000
	var b strings.Builder
	b.WriteString("<configuration>\n")
	for i := 0; i < depth; i++ {
		b.WriteString("<a>")
		if i == 70 {
			b.WriteString("\n")
		}
	}
	for i := 0; i < depth; i++ {
		b.WriteString("</a>")
	}
	b.WriteString("\n</configuration>\n")
	data := []byte(b.String())
	var err error
	// Allocation is the measure of work here, not the clock: the quadratic
	// import allocated a path of every depth, gigabytes for this file.
	allocs := testing.AllocsPerRun(1, func() { _, err = ImportXML("deep.xml", data) })
	if err == nil || !strings.Contains(err.Error(), "deep.xml:2") || !strings.Contains(err.Error(), "nested more than") {
		t.Fatalf("ImportXML of %d-deep XML: %v; want a nesting error at deep.xml:2", depth, err)
	}
	if allocs > 10000 {
		t.Errorf("refusing the deep file took %.0f allocations, want a bounded few", allocs)
	}
}

func TestImportXMLWarnsOncePerUnknownElement(t *testing.T) {
	var b strings.Builder
	b.WriteString("<configuration>\n<Server>\n")
	for i := 0; i < 100000; i++ {
		b.WriteString("<Foo/>")
	}
	b.WriteString("\n<Bar/>\n</Server>\n</configuration>\n")
	res, err := ImportXML("wide.xml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	var unknown []string
	for _, w := range res.Warnings {
		if strings.Contains(w, "is not known") {
			unknown = append(unknown, w)
		}
	}
	want := []string{
		"wide.xml:3: <configuration/Server/Foo> is not known; ignored (and 99999 more like it)",
		"wide.xml:4: <configuration/Server/Bar> is not known; ignored",
	}
	if len(unknown) != len(want) || unknown[0] != want[0] || unknown[1] != want[1] {
		t.Errorf("warnings about unknown elements:\n got %q\nwant %q", unknown, want)
	}
}
