package sensors

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func openDriver(t *testing.T, driver string, opts any, env Env) (Driver, error) {
	t.Helper()
	c := []Config{{Name: "x", Driver: driver, Options: opts}}
	if err := ValidateAll(c); err != nil {
		t.Fatal(err)
	}
	reg, _ := Lookup(driver)
	return reg.New(c[0], c[0].Options, env)
}

const w1ok = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"

func TestDS18B20(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"28-0316a2799aff/w1_slave": w1ok, "w1_bus_master1/x": ""})
	d, err := openDriver(t, "ds18b20", &DS18B20Options{Root: root}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := d.Read(context.Background())
	if err != nil || v["temperature"] != (Value{V: 23.125, Unit: "C"}) {
		t.Fatalf("%v %v", v, err)
	}
	slave := filepath.Join(root, "28-0316a2799aff/w1_slave")
	for body, want := range map[string]string{
		"72 01 4b 46 7f ff 0e 10 57 : crc=12 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n":  "CRC check failed",
		"50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n": "power-on reset",
		"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n":                                     "short read",
	} {
		writeTree(t, root, map[string]string{"28-0316a2799aff/w1_slave": body})
		if _, err := d.Read(context.Background()); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", body, err, want)
		}
	}
	// Negative temperatures (freezers) parse.
	writeTree(t, root, map[string]string{"28-0316a2799aff/w1_slave": "5e ff 4b 46 7f ff 0c 10 2a : crc=2a YES\n5e ff 4b 46 7f ff 0c 10 2a t=-10125\n"})
	if v, err := d.Read(context.Background()); err != nil || v["temperature"].V != -10.125 {
		t.Fatalf("%v %v", v, err)
	}
	// The device leaves the bus.
	os.RemoveAll(filepath.Dir(slave))
	if _, err := d.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "device gone") {
		t.Fatalf("err %v", err)
	}
}

func TestDS18B20Selection(t *testing.T) {
	root := t.TempDir()
	if _, err := openDriver(t, "ds18b20", &DS18B20Options{Root: root}, Env{}); err == nil || !strings.Contains(err.Error(), "dtoverlay=w1-gpio") {
		t.Fatalf("no devices: %v", err)
	}
	writeTree(t, root, map[string]string{"28-aaa/w1_slave": w1ok, "28-bbb/w1_slave": w1ok})
	if _, err := openDriver(t, "ds18b20", &DS18B20Options{Root: root}, Env{}); err == nil || !strings.Contains(err.Error(), "28-aaa, 28-bbb") {
		t.Fatalf("two devices: %v", err)
	}
	if _, err := openDriver(t, "ds18b20", &DS18B20Options{Root: root, ID: "28-ccc"}, Env{}); err == nil || !strings.Contains(err.Error(), "28-ccc not found") {
		t.Fatalf("missing id: %v", err)
	}
	if d, err := openDriver(t, "ds18b20", &DS18B20Options{Root: root, ID: "28-bbb"}, Env{}); err != nil {
		t.Fatal(err)
	} else if _, err := d.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSystemDriver(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"thermal/thermal_zone0/type": "gpu-thermal\n",
		"thermal/thermal_zone0/temp": "99000\n",
		"thermal/thermal_zone1/type": "cpu-thermal\n",
		"thermal/thermal_zone1/temp": "61835\n",
		"proc/loadavg":               "0.52 0.40 0.35 1/123 4567\n",
		"proc/meminfo":               "MemTotal:        3884096 kB\nMemFree:          100000 kB\nMemAvailable:    1942048 kB\n",
		"firmware/get_throttled":     "50005\n",
	})
	state := t.TempDir()
	d, err := openDriver(t, "system", &SystemOptions{ThermalRoot: root + "/thermal", ProcRoot: root + "/proc", Throttled: root + "/firmware/get_throttled"}, Env{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	v, err := d.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"soc_temp": 61.835, "load1": 0.52, "mem_available": 50,
		// 0x50005: under-voltage now (bit 0) and throttled now (bit 2); both
		// have occurred (16, 18).
		"under_voltage": 1, "freq_capped": 0, "throttled": 1, "soft_temp_limit": 0,
		"under_voltage_occurred": 1, "freq_capped_occurred": 0, "throttled_occurred": 1, "soft_temp_limit_occurred": 0,
	}
	for k, w := range want {
		if v[k].V != w {
			t.Errorf("%s = %v, want %v", k, v[k], w)
		}
	}
	if v["disk_free"].V <= 0 || v["disk_free"].V > 100 || v["disk_free_mb"].V <= 0 {
		t.Errorf("disk %v %v", v["disk_free"], v["disk_free_mb"])
	}

	// Not a Pi: no firmware file, no vcgencmd: the flags are simply absent.
	d, err = openDriver(t, "system", &SystemOptions{ThermalRoot: root + "/none", ProcRoot: root + "/proc", Throttled: root + "/none", Vcgencmd: "edge-agent-no-such-vcgencmd", Path: state}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	v, err = d.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := v["under_voltage"]; ok {
		t.Errorf("flags on a non-Pi: %v", v)
	}
	if _, ok := v["soc_temp"]; ok {
		t.Errorf("soc_temp without thermal zones: %v", v)
	}

	// vcgencmd fallback.
	bin := t.TempDir()
	writeTree(t, bin, map[string]string{"vcgencmd": "#!/bin/sh\necho throttled=0x80008\n"})
	os.Chmod(filepath.Join(bin, "vcgencmd"), 0o755)
	d, _ = openDriver(t, "system", &SystemOptions{ProcRoot: root + "/proc", Throttled: root + "/none", Vcgencmd: filepath.Join(bin, "vcgencmd"), Path: state}, Env{})
	v, err = d.Read(context.Background())
	if err != nil || v["soft_temp_limit"].V != 1 || v["soft_temp_limit_occurred"].V != 1 || v["under_voltage"].V != 0 {
		t.Fatalf("vcgencmd: %v %v", v, err)
	}

	// The state dir is gone: the one reading that matters most is an error.
	d, _ = openDriver(t, "system", &SystemOptions{ProcRoot: root + "/proc", Path: filepath.Join(state, "missing")}, Env{})
	if _, err := d.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "statfs") {
		t.Fatalf("err %v", err)
	}
}
