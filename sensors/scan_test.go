package sensors

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// fakeBus answers at the addresses it has, with per-register contents;
// everything else NACKs like an empty bus.
type fakeBus struct {
	devs map[uint16]map[byte][]byte
}

func (b *fakeBus) Tx(addr uint16, w, r []byte) error {
	regs, ok := b.devs[addr]
	if !ok {
		return errors.New("sysfs-i2c: remote I/O error")
	}
	if len(w) == 1 {
		copy(r, regs[w[0]])
	}
	return nil
}
func (b *fakeBus) String() string                    { return "fake" }
func (b *fakeBus) SetSpeed(f physic.Frequency) error { return nil }
func (b *fakeBus) Close() error                      { return nil }

var _ i2c.BusCloser = (*fakeBus)(nil)

func TestScanIdentifiesChipsAndWritesSnippet(t *testing.T) {
	buses := map[string]*fakeBus{
		"/dev/i2c-1": {devs: map[uint16]map[byte][]byte{
			0x76: {0xD0: {0x60}},       // BME280
			0x77: {0xD0: {0x58}},       // BMP280
			0x48: {0x01: {0x85, 0x83}}, // ADS1115 after reset
			0x3c: {},                   // an OLED: unknown
		}},
	}
	open := func(p string) (i2c.BusCloser, error) {
		if b, ok := buses[p]; ok {
			return b, nil
		}
		return nil, errors.New("/dev/i2c-2: permission denied: add the agent's user to group i2c")
	}
	r := ScanReport{I2C: ScanI2C([]string{"/dev/i2c-1", "/dev/i2c-2"}, open), W1: []string{"28-0316a2799aff", "10-000802b4a5c7"}}
	var got []string
	for _, d := range r.I2C[0].Devices {
		got = append(got, d.Chip)
	}
	if strings.Join(got, ",") != ",ADS1115/ADS1015,BME280,BMP280" {
		t.Fatalf("chips by address: %q", got)
	}
	var out bytes.Buffer
	r.WriteText(&out)
	for _, want := range []string{
		"I2C /dev/i2c-1 0x3c: unknown chip",
		"I2C /dev/i2c-2: /dev/i2c-2: permission denied",
		"1-Wire 28-0316a2799aff",
		"  - {name: ambient, driver: bme280, bus: /dev/i2c-1, address: 0x76, interval: 10s}",
		"  - {name: ambient-2, driver: bmp280, bus: /dev/i2c-1, address: 0x77, interval: 10s}",
		"  - {name: adc, driver: ads1x15, bus: /dev/i2c-1, address: 0x48",
		"  - {name: probe, driver: ds18b20, id: 28-0316a2799aff, interval: 30s}",
		"  - {name: gateway, driver: system, interval: 30s}",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("scan output lacks %q:\n%s", want, out.String())
		}
	}
	// The snippet is a valid sensors config for this agent.
	var doc struct {
		Sensors []Config `yaml:"sensors"`
	}
	if err := yamlUnmarshal(r.Snippet(), &doc); err != nil {
		t.Fatal(err)
	}
	if err := ValidateAll(doc.Sensors); err != nil {
		t.Fatalf("snippet does not validate: %v\n%s", err, r.Snippet())
	}
	if len(doc.Sensors) != 5 {
		t.Fatalf("%d sensors in snippet", len(doc.Sensors))
	}
}

func TestScanOnThisMachine(t *testing.T) {
	// This machine (CI, the dev container) has no buses: the scan says how
	// to enable each and still offers the system sensor.
	r := Scan()
	var out bytes.Buffer
	r.WriteText(&out)
	if len(r.I2C) == 0 && !strings.Contains(out.String(), "I2C: no buses") {
		t.Fatalf("output:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "driver: system") {
		t.Fatalf("output:\n%s", out.String())
	}
}
