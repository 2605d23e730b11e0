package agent

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MachineIDFiles are read in order for the device's identity: systemd's
// machine id, then the D-Bus copy older images have instead.
var MachineIDFiles = []string{"/etc/machine-id", "/var/lib/dbus/machine-id"}

// MachineIDStateFile is the fallback identity kept in state_dir when the
// image has no machine id (minimal containers, some vendor images).
const MachineIDStateFile = "machine-id"

// MachineID returns the device's machine id and the file it came from. When
// none of files holds one, a random id is created once in stateDir and reused,
// so the server name stays stable across restarts.
func MachineID(stateDir string, files []string) (id, source string, err error) {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if id := strings.TrimSpace(string(b)); id != "" && id != "uninitialized" {
			return id, f, nil
		}
	}
	path := filepath.Join(stateDir, MachineIDStateFile)
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, path, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("read machine id %s: %w", path, err)
	}
	id = randomHex(16)
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return "", "", fmt.Errorf("create state_dir %s for the machine id: %w", stateDir, err)
	}
	// Write then rename: a power cut must not leave an empty id behind that
	// would give the device a new name at the next boot.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o640); err != nil {
		return "", "", fmt.Errorf("persist machine id %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", "", fmt.Errorf("persist machine id %s: %w", path, err)
	}
	return id, path, nil
}

// ServerNameFor is "<site>-<8 hex>": readable in hub monitoring, unique per
// device, and stable across restarts. The machine id is hashed with a fixed
// label rather than shown, as systemd asks of anything that exposes it
// (machine-id(5)), and so that a name never reveals the raw id.
func ServerNameFor(site, machineID string) string {
	sum := sha256.Sum256([]byte("edge-agent server name\x00" + machineID))
	return site + "-" + hex.EncodeToString(sum[:4])
}

// DeriveServerName is ServerNameFor with the machine id of this device.
func DeriveServerName(site, stateDir string) (string, error) {
	id, _, err := MachineID(stateDir, MachineIDFiles)
	if err != nil {
		return "", err
	}
	return ServerNameFor(site, id), nil
}

// NewInstanceID is a random id for one run of the agent. Two devices cloned
// from one SD card share machine id and server name; only this tells them
// apart in heartbeats.
func NewInstanceID() string { return randomHex(8) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
