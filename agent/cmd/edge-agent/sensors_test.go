package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/edge-agent/edge-agent/sensors"
)

func TestSensorsSubcommands(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"sensors", "list"}, &out, &errb); code != 0 || out.String() != "ads1x15\nbme280\nbmp280\nds18b20\ngpio\nmodbus\nsim\nsystem\n" {
		t.Fatalf("list: %d %q %s", code, out.String(), errb.String())
	}
	for _, d := range []string{"ads1x15", "bme280", "bmp280", "ds18b20", "gpio", "modbus", "sim", "system"} {
		out.Reset()
		if code := run([]string{"sensors", "sample", d}, &out, &errb); code != 0 || !strings.Contains(out.String(), "driver: "+d) {
			t.Errorf("sample %s: %d\n%s", d, code, out.String())
		}
	}
	// This machine has no I2C, GPIO or 1-Wire: scan says so and exits 0.
	out.Reset()
	if code := run([]string{"sensors", "scan"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "dtparam=i2c_arm=on") || !strings.Contains(out.String(), "driver: system") {
		t.Fatalf("scan: %d\n%s%s", code, out.String(), errb.String())
	}
	if code := run([]string{"sensors", "frob"}, &out, &errb); code != 2 {
		t.Fatalf("bad subcommand exit %d", code)
	}
}

// scan --modbus finds the unit ids that answer (a value or an exception),
// within the ids and the time given.
func TestSensorsScanModbus(t *testing.T) {
	sim := sensors.NewModbusSim(3, 5)
	addr, err := sim.ServeTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	var out, errb bytes.Buffer
	if code := run([]string{"sensors", "scan", "--modbus", "tcp://" + addr, "--ids", "1-5", "--timeout", "50ms"}, &out, &errb); code != 0 {
		t.Fatalf("scan: %d %s", code, errb.String())
	}
	for _, want := range []string{
		"unit 3 answers: illegal data address (a device is there", "unit 5 answers", "probed 5 of 5 unit ids", "2 answered",
		`{name: modbus-3, driver: modbus, url: "tcp://` + addr + `", unit_id: 3,`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("scan output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "unit 1 answers") {
		t.Errorf("a silent id reported:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"sensors", "scan", "--modbus", "tcp://" + addr, "--ids", "1-200", "--timeout", "50ms", "--max-time", "300ms"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "time ran out") {
		t.Errorf("bounded by --max-time: %d\n%s", code, out.String())
	}
	if code := run([]string{"sensors", "scan", "--modbus", "tcp://" + addr, "--ids", "9-3"}, &out, &errb); code != 2 {
		t.Errorf("bad ids: exit %d", code)
	}
}
