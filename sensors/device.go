package sensors

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/host/v3/sysfs"
)

// deviceAccess checks that a device node exists and is openable, and turns
// the two field failures (bus not enabled, agent not in the group) into
// what the technician must do. Checked at every open so that enabling the
// bus or fixing the group later recovers without a restart of the config.
func deviceAccess(path, group, enable string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return accessError(path, group, enable, err)
	}
	return f.Close()
}

func accessError(path, group, enable string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s does not exist: %s; `edge-agent sensors scan` lists what this device has", path, enable)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: permission denied: add the agent's user to group %s (`sudo usermod -aG %s edge-agent`) and restart the agent", path, group, group)
	}
	return fmt.Errorf("open %s: %w", path, err)
}

const i2cEnable = "enable I2C with `sudo raspi-config nonint do_i2c 0` (or dtparam=i2c_arm=on in /boot/firmware/config.txt) and reboot"

// I2COptions are the keys every I2C driver shares.
type I2COptions struct {
	Bus     string `yaml:"bus"`
	Address uint16 `yaml:"address"`
}

// busNumber accepts "/dev/i2c-1" or "1".
func (o I2COptions) busNumber() (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(o.Bus, "/dev/i2c-"))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bus %q: want a device such as /dev/i2c-1", o.Bus)
	}
	return n, nil
}

func (o I2COptions) validate(addrs ...uint16) error {
	if _, err := o.busNumber(); err != nil {
		return err
	}
	for _, a := range addrs {
		if a == o.Address {
			return nil
		}
	}
	var s []string
	for _, a := range addrs {
		s = append(s, fmt.Sprintf("0x%02x", a))
	}
	return fmt.Errorf("address 0x%02x: this chip answers only at %s (set by its address pin)", o.Address, strings.Join(s, ", "))
}

// openI2C opens the bus through periph's Linux i2c-dev driver.
func openI2C(o I2COptions) (i2c.BusCloser, error) {
	n, err := o.busNumber()
	if err != nil {
		return nil, err
	}
	path := fmt.Sprintf("/dev/i2c-%d", n)
	if err := deviceAccess(path, "i2c", i2cEnable); err != nil {
		return nil, err
	}
	b, err := sysfs.NewI2C(n)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return b, nil
}

// i2cErr names the chip and address in a bus error: a NACK ("remote I/O
// error") at a known address almost always means a loose wire or no power.
func i2cErr(chip string, addr uint16, what string, err error) error {
	return fmt.Errorf("%s at 0x%02x: %s: %w (check wiring and power if this persists)", chip, addr, what, err)
}

// round keeps published values at the precision the chip has, so JSON
// stays short and diffs stay readable.
func round(v float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(v*p) / p
}
