// Package powercut simulates what a power cut does to a gateway's storage:
// every write the kernel has not yet put on the device is gone. Tests (and
// the chaos harness) store into an ext4 filesystem on a loop device, take a
// snapshot of the backing image at the moment of the "cut", repair it with
// fsck as a boot would, and mount the snapshot to see what survived.
//
// Why it loses exactly the unsynced writes: the mounted filesystem keeps
// dirty pages in its own page cache; only fsync (or writeback) pushes them
// through the loop device into the backing file. Reading the backing file
// therefore sees what a real disk would hold after the cut, provided
// writeback is held back for the duration (HoldWriteback) and the journal
// does not commit on its own (the filesystem is mounted with a long commit
// interval). Everything here needs root; Available says why not.
package powercut

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Available reports whether this machine can run power-cut simulations.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("power-cut simulation needs root (loop devices, mount, vm sysctls): run the tests as root, as CI does")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "e2fsck", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("power-cut simulation needs %s (Debian: apt-get install e2fsprogs mount): %w", tool, err)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("no loop device support (/dev/loop-control): %w", err)
	}
	return nil
}

// Disk is an ext4 filesystem in an image file, mounted through a loop device.
type Disk struct {
	Image string // backing file
	Dir   string // mount point
	dev   string
}

// Create makes an ext4 image of size bytes at image and mounts it at dir.
func Create(image, dir string, size int64) (*Disk, error) {
	f, err := os.Create(image)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("size image %s: %w", image, err)
	}
	// No lazy init: background zeroing would write behind the test's back.
	if err := run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", image); err != nil {
		return nil, err
	}
	return Mount(image, dir)
}

// Mount repairs image as a boot would (journal replay, fsck -y) and mounts it
// at dir with a journal commit interval long enough not to flush anything
// during a test.
func Mount(image, dir string) (*Disk, error) {
	// e2fsck exits 1 when it fixed something: that is a normal boot.
	if out, err := exec.Command("e2fsck", "-f", "-y", image).CombinedOutput(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() > 1 {
			return nil, fmt.Errorf("e2fsck %s: %v: %s", image, err, out)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out, err := exec.Command("losetup", "-f", "--show", image).Output()
	if err != nil {
		return nil, fmt.Errorf("losetup %s: %w", image, err)
	}
	d := &Disk{Image: image, Dir: dir, dev: strings.TrimSpace(string(out))}
	if err := run("mount", "-t", "ext4", "-o", "commit=600", d.dev, dir); err != nil {
		_ = run("losetup", "-d", d.dev)
		return nil, err
	}
	return d, nil
}

// Cut takes the power-cut image: the backing file as the loop device has
// written it so far, without the filesystem's unsynced pages. The disk stays
// mounted; whatever it writes later is not in the snapshot.
func (d *Disk) Cut(snapshot string) error {
	src, err := os.Open(d.Image)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(snapshot)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("snapshot %s: %w", d.Image, err)
	}
	return dst.Close()
}

// WrittenBytes is what the filesystem has sent to the device so far, data,
// metadata and journal included: the figure that wears out an SD card.
func (d *Disk) WrittenBytes() (uint64, error) {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(d.dev), "stat"))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 7 {
		return 0, fmt.Errorf("unexpected %s stat: %q", d.dev, b)
	}
	sectors, err := strconv.ParseUint(f[6], 10, 64)
	return sectors * 512, err
}

// Close unmounts and detaches the loop device; the image stays.
func (d *Disk) Close() error {
	return errors.Join(run("umount", d.Dir), run("losetup", "-d", d.dev))
}

// HoldWriteback stops the kernel from writing dirty pages back on its own
// (periodic writeback off, a long expiry, high dirty ratios) so that only
// fsync makes data durable, as during the instants before a real cut. It is
// machine-wide: call the returned restore as soon as the cut is taken.
func HoldWriteback() (restore func() error, err error) {
	settings := []struct{ key, val string }{
		{"dirty_writeback_centisecs", "0"},
		{"dirty_expire_centisecs", "360000"},
		{"dirty_background_ratio", "50"},
		{"dirty_ratio", "80"},
	}
	var saved []func() error
	restore = func() error {
		var errs []error
		for i := len(saved) - 1; i >= 0; i-- {
			errs = append(errs, saved[i]())
		}
		return errors.Join(errs...)
	}
	for _, s := range settings {
		path := filepath.Join("/proc/sys/vm", s.key)
		old, err := os.ReadFile(path)
		if err != nil {
			return nil, errors.Join(err, restore())
		}
		if err := os.WriteFile(path, []byte(s.val), 0o644); err != nil {
			return nil, errors.Join(fmt.Errorf("set vm.%s: %w", s.key, err), restore())
		}
		saved = append(saved, func() error { return os.WriteFile(path, old, 0o644) })
	}
	return restore, nil
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
