package control

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pochta/pochta/storage/boltstore"
)

// TestMain doubles as the client of TestControlSocketRefusesAnotherUser:
// started with POCHTA_PEER_SOCKET set (as another user), the test binary
// asks that socket for the user list and prints what it got.
func TestMain(m *testing.M) {
	if sock := os.Getenv("POCHTA_PEER_SOCKET"); sock != "" {
		c, err := Dial(sock)
		if err == nil {
			_, err = c.Users(context.Background())
		}
		fmt.Printf("peer result: %v\n", err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestPeerAllowedIsRootAndTheDaemonsOwnUser(t *testing.T) {
	for _, c := range []struct {
		uid, self uint32
		want      bool
	}{
		{0, 1000, true},
		{1000, 1000, true},
		{0, 0, true},
		{1001, 1000, false},
		{65534, 0, false},
		{1000, 0, false},
	} {
		if got := peerAllowed(c.uid, c.self); got != c.want {
			t.Errorf("peerAllowed(uid %d, daemon %d) = %v, want %v", c.uid, c.self, got, c.want)
		}
	}
}

func TestControlSocketChecksThePeerAndAcceptsItsOwnUser(t *testing.T) {
	_, client, sock := newDaemon(t)
	if _, err := client.Users(context.Background()); err != nil {
		t.Fatalf("the daemon's own user was refused: %v", err)
	}
	// The check really runs: the kernel names us as the peer.
	l, err := Listen(sock + "2")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, ok := l.(*credListener); !ok {
		t.Fatalf("Listen returned %T, want the peer-checking listener", l)
	}
	go func() {
		c, err := l.(*credListener).Listener.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		uid, err := peerUID(c)
		fmt.Fprintf(c, "%d %v", uid, err)
	}()
	c, err := net.Dial("unix", sock+"2")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, _ := io.ReadAll(c)
	if want := fmt.Sprintf("%d <nil>", os.Geteuid()); string(got) != want {
		t.Errorf("peer credentials read %q, want %q", got, want)
	}
}

// TestControlSocketRefusesAnotherUser opens the socket's mode to everyone,
// so that only the peer check stands between another user and the API,
// and connects as nobody.
func TestControlSocketRefusesAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("connecting as another user needs root")
	}
	dir, err := os.MkdirTemp("", "pochta-peercred-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	store, err := boltstore.Open(filepath.Join(dir, "pochta.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	sock := filepath.Join(dir, "pochta.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: Handler(&Local{Store: store}, nil), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	peer := filepath.Join(dir, "peer.test")
	if err := os.WriteFile(peer, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{dir: 0o755, sock: 0o666} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(peer)
	cmd.Env = append(os.Environ(), "POCHTA_PEER_SOCKET="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("peer process: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "peer result: control socket: user 65534 may not administer this daemon") {
		t.Errorf("nobody connecting to the control socket got %q, want a refusal naming uid 65534", out)
	}
	// With the socket's own mode (0600) the kernel refuses first; that is
	// one sentence too, not "dial unix …: connect: permission denied".
	if err := os.Chmod(sock, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(peer)
	cmd.Env = append(os.Environ(), "POCHTA_PEER_SOCKET="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("peer process: %v\n%s", err, out)
	}
	if want := "peer result: you may not use the control socket " + sock + ": run the command as root"; !strings.Contains(string(out), want) {
		t.Errorf("nobody connecting to the 0600 control socket got %q, want %q", out, want)
	}
}
