package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestSensorsSubcommands(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"sensors", "list"}, &out, &errb); code != 0 || out.String() != "ads1x15\nbme280\nbmp280\nds18b20\ngpio\nsim\nsystem\n" {
		t.Fatalf("list: %d %q %s", code, out.String(), errb.String())
	}
	for _, d := range []string{"ads1x15", "bme280", "bmp280", "ds18b20", "gpio", "sim", "system"} {
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
