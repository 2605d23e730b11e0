package sensors

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/host/v3/gpioioctl"
)

// ScanReport is what `edge-agent sensors scan` found on this device.
type ScanReport struct {
	I2C  []I2CBusScan
	GPIO []GPIOChipScan
	W1   []string // 1-Wire device ids, e.g. 28-0316a2799aff
	// GPIOErr explains why no chip could be listed (e.g. permissions).
	GPIOErr string
}

// I2CBusScan is one bus and the addresses that answered.
type I2CBusScan struct {
	Path    string
	Err     string
	Devices []I2CDeviceScan
}

// I2CDeviceScan is an address that acknowledged a read; Chip and Driver
// are set when an id register identified it.
type I2CDeviceScan struct {
	Addr   uint16
	Chip   string
	Driver string
}

// GPIOChipScan is one GPIO controller and its named lines.
type GPIOChipScan struct {
	Path  string
	Label string
	Lines []string
}

// ScanI2C probes every address 0x03-0x77 of each bus with a one-byte read
// (what `i2cdetect -r` does; safe for the sensors this agent drives) and
// identifies known chips by their id registers.
func ScanI2C(paths []string, open func(path string) (i2c.BusCloser, error)) []I2CBusScan {
	var out []I2CBusScan
	for _, p := range paths {
		bs := I2CBusScan{Path: p}
		bus, err := open(p)
		if err != nil {
			bs.Err = err.Error()
			out = append(out, bs)
			continue
		}
		var b [1]byte
		for addr := uint16(0x03); addr <= 0x77; addr++ {
			if bus.Tx(addr, nil, b[:]) != nil {
				continue
			}
			bs.Devices = append(bs.Devices, identify(bus, addr))
		}
		_ = bus.Close()
		out = append(out, bs)
	}
	return out
}

func identify(bus i2c.Bus, addr uint16) I2CDeviceScan {
	d := I2CDeviceScan{Addr: addr}
	switch {
	case addr == 0x76 || addr == 0x77:
		var id [1]byte
		if bus.Tx(addr, []byte{0xD0}, id[:]) == nil {
			switch id[0] {
			case 0x60:
				d.Chip, d.Driver = "BME280", "bme280"
			case 0x58:
				d.Chip, d.Driver = "BMP280", "bmp280"
			case 0x55:
				d.Chip = "BMP180 (not supported)"
			}
		}
	case addr >= 0x48 && addr <= 0x4B:
		// The ADS1x15 has no id register; its config register resets to
		// 0x8583 on both chips (bit 15 reads back as idle/busy), a pattern
		// other chips at 0x48-0x4B rarely share.
		var cfg [2]byte
		if bus.Tx(addr, []byte{0x01}, cfg[:]) == nil && cfg[0]&0x7F == 0x05 && cfg[1] == 0x83 {
			d.Chip, d.Driver = "ADS1115/ADS1015", "ads1x15"
		}
	}
	return d
}

// Scan looks at the real device: /dev/i2c-*, /dev/gpiochip*, 1-Wire.
func Scan() ScanReport {
	var r ScanReport
	paths, _ := filepath.Glob("/dev/i2c-*")
	sort.Slice(paths, func(i, j int) bool { return busNum(paths[i]) < busNum(paths[j]) })
	r.I2C = ScanI2C(paths, func(p string) (i2c.BusCloser, error) {
		return openI2C(I2COptions{Bus: p})
	})
	r.W1 = scanW1("/sys/bus/w1/devices")
	chips, _ := filepath.Glob("/dev/gpiochip*")
	for _, c := range chips {
		if err := deviceAccess(c, "gpio", "no GPIO controller"); err != nil {
			r.GPIOErr = err.Error()
			return r
		}
	}
	if len(chips) > 0 {
		if err := periphInit(); err != nil {
			r.GPIOErr = err.Error()
		}
		for _, c := range gpioioctl.Chips {
			cs := GPIOChipScan{Path: c.Path(), Label: c.Label()}
			for _, l := range c.Lines() {
				if n := l.Name(); n != "" && n != "-" && n != "_" {
					cs.Lines = append(cs.Lines, n)
				}
			}
			r.GPIO = append(r.GPIO, cs)
		}
	}
	return r
}

func busNum(p string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(p, "/dev/i2c-"))
	return n
}

func scanW1(root string) []string {
	var ids []string
	devs, _ := filepath.Glob(filepath.Join(root, "*-*"))
	for _, d := range devs {
		if b := filepath.Base(d); !strings.HasPrefix(b, "w1_bus_master") {
			ids = append(ids, b)
		}
	}
	sort.Strings(ids)
	return ids
}

// WriteText prints the report and a config snippet for what was found.
func (r ScanReport) WriteText(w io.Writer) {
	if len(r.I2C) == 0 {
		fmt.Fprintf(w, "I2C: no buses (/dev/i2c-*): %s\n", i2cEnable)
	}
	for _, b := range r.I2C {
		if b.Err != "" {
			fmt.Fprintf(w, "I2C %s: %s\n", b.Path, b.Err)
			continue
		}
		if len(b.Devices) == 0 {
			fmt.Fprintf(w, "I2C %s: no device answered (check wiring and power)\n", b.Path)
		}
		for _, d := range b.Devices {
			chip := d.Chip
			if chip == "" {
				chip = "unknown chip"
			}
			fmt.Fprintf(w, "I2C %s 0x%02x: %s\n", b.Path, d.Addr, chip)
		}
	}
	switch {
	case r.GPIOErr != "":
		fmt.Fprintf(w, "GPIO: %s\n", r.GPIOErr)
	case len(r.GPIO) == 0:
		fmt.Fprintln(w, "GPIO: no chips (/dev/gpiochip*): this device has no GPIO controller")
	}
	for _, c := range r.GPIO {
		fmt.Fprintf(w, "GPIO %s (%s): %d named lines: %s\n", c.Path, c.Label, len(c.Lines), strings.Join(c.Lines, " "))
	}
	if len(r.W1) == 0 {
		fmt.Fprintln(w, "1-Wire: no devices in /sys/bus/w1/devices (enable with dtoverlay=w1-gpio in /boot/firmware/config.txt)")
	}
	for _, id := range r.W1 {
		fmt.Fprintf(w, "1-Wire %s\n", id)
	}
	fmt.Fprintf(w, "\n# Config snippet for agent.yaml (rename the sensors; `edge-agent sensors sample DRIVER` documents every key):\nsensors:\n%s", r.Snippet())
}

// Snippet is a sensors: list for what the scan identified, plus the
// gateway's own health, which every device has.
func (r ScanReport) Snippet() string {
	var b strings.Builder
	n := map[string]int{}
	name := func(base string) string {
		n[base]++
		if n[base] == 1 {
			return base
		}
		return fmt.Sprintf("%s-%d", base, n[base])
	}
	for _, bus := range r.I2C {
		for _, d := range bus.Devices {
			switch d.Driver {
			case "bme280", "bmp280":
				fmt.Fprintf(&b, "  - {name: %s, driver: %s, bus: %s, address: 0x%02x, interval: 10s}\n", name("ambient"), d.Driver, bus.Path, d.Addr)
			case "ads1x15":
				fmt.Fprintf(&b, "  - {name: %s, driver: ads1x15, bus: %s, address: 0x%02x, interval: 5s, channels: [{channel: 0, metric: ch0}]}\n", name("adc"), bus.Path, d.Addr)
			}
		}
	}
	for _, id := range r.W1 {
		if strings.HasPrefix(id, "28-") {
			fmt.Fprintf(&b, "  - {name: %s, driver: ds18b20, id: %s, interval: 30s}\n", name("probe"), id)
		}
	}
	b.WriteString("  - {name: gateway, driver: system, interval: 30s}\n")
	return b.String()
}
