package agent

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestMachineIDSources(t *testing.T) {
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc-machine-id")
	dbus := filepath.Join(dir, "dbus-machine-id")
	state := filepath.Join(dir, "state")
	files := []string{etc, dbus}

	if err := os.WriteFile(dbus, []byte("dbus-id\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if id, src, err := MachineID(state, files); err != nil || id != "dbus-id" || src != dbus {
		t.Fatalf("missing /etc/machine-id: got %q from %q (%v), want the D-Bus id", id, src, err)
	}
	// systemd writes "uninitialized" during first boot; it is not an id.
	if err := os.WriteFile(etc, []byte("uninitialized\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if id, _, _ := MachineID(state, files); id != "dbus-id" {
		t.Fatalf("\"uninitialized\" taken as a machine id: %q", id)
	}
	if err := os.WriteFile(etc, []byte("etc-id\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if id, src, _ := MachineID(state, files); id != "etc-id" || src != etc {
		t.Fatalf("got %q from %q, want /etc/machine-id first", id, src)
	}

	// No machine id at all: a random one, persisted and reused.
	first, src, err := MachineID(state, nil)
	if err != nil || src != filepath.Join(state, MachineIDStateFile) || len(first) != 32 {
		t.Fatalf("fallback id %q from %q (%v)", first, src, err)
	}
	again, _, err := MachineID(state, nil)
	if err != nil || again != first {
		t.Fatalf("fallback id changed across restarts: %q then %q (%v)", first, again, err)
	}
	if other, _, _ := MachineID(t.TempDir(), nil); other == first {
		t.Fatal("two state dirs got the same random id")
	}
}

func TestServerNameFor(t *testing.T) {
	a := ServerNameFor("store-0042", "3d1219c7c4c5404aaa1f6d2a48adfda4")
	if !regexp.MustCompile(`^store-0042-[0-9a-f]{8}$`).MatchString(a) {
		t.Fatalf("server name %q is not <site>-<8 hex>", a)
	}
	if a != ServerNameFor("store-0042", "3d1219c7c4c5404aaa1f6d2a48adfda4") {
		t.Fatal("server name is not stable")
	}
	if a == ServerNameFor("store-0042", "0d1219c7c4c5404aaa1f6d2a48adfda4") {
		t.Fatal("two machines got the same server name")
	}
	if regexp.MustCompile(`3d1219c7`).MatchString(a) {
		t.Fatalf("server name %q shows the raw machine id", a)
	}
	if NewInstanceID() == NewInstanceID() {
		t.Fatal("instance ids repeat")
	}
}
