package sensors

import (
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func yamlUnmarshal(s string, v any) error {
	return yaml.Unmarshal([]byte("sensors:\n"+strings.TrimPrefix(s, "sensors:\n")), v)
}

func TestDriverKeysDecodedStrictly(t *testing.T) {
	var doc struct {
		Sensors []Config `yaml:"sensors"`
	}
	ok := `sensors:
  - {name: a, driver: bme280, bus: /dev/i2c-1, address: 0x77, oversample_humidity: 16}
  - name: b
    driver: ads1x15
    channels: [{channel: 0, metric: pressure, unit: bar, in: [0.6, 3.0], out: [0, 10]}]
  - {name: c, driver: gpio, pin: GPIO17, mode: counter}
  - {name: d, driver: system}
  - {name: e, driver: ds18b20}
`
	if err := yaml.Unmarshal([]byte(ok), &doc); err != nil {
		t.Fatal(err)
	}
	if err := ValidateAll(doc.Sensors); err != nil {
		t.Fatal(err)
	}
	if o := doc.Sensors[0].Options.(*BMX280Options); o.Address != 0x77 || o.Bus != "/dev/i2c-1" || o.OversampleHumidity != 16 || o.OversamplePressure != 4 {
		t.Fatalf("bme280 options %+v", o)
	}
	if o := doc.Sensors[1].Options.(*ADS1x15Options); o.Chip != "ads1115" || o.Channels[0].DataRate != 128 || o.Channels[0].MaxVoltage != 4.096 {
		t.Fatalf("ads options %+v", o)
	}
	bad := "sensors:\n  - {name: a, driver: bme280, adress: 0x77}\n"
	doc.Sensors = nil
	if err := yaml.Unmarshal([]byte(bad), &doc); err != nil {
		t.Fatal(err)
	}
	err := ValidateAll(doc.Sensors)
	if err == nil || !strings.Contains(err.Error(), "sensors[0].adress") || !strings.Contains(err.Error(), "address, alert_above") {
		t.Fatalf("typo: %v", err)
	}
}

// Every sample printed by `edge-agent sensors sample` is a valid config.
func TestSamplesValidate(t *testing.T) {
	for _, name := range Drivers() {
		reg, _ := Lookup(name)
		if reg.Sample == "" {
			continue
		}
		var cfgs []Config
		if err := yaml.Unmarshal([]byte(reg.Sample), &cfgs); err != nil {
			t.Fatalf("%s sample: %v", name, err)
		}
		if err := ValidateAll(cfgs); err != nil {
			t.Errorf("%s sample does not validate: %v", name, err)
		}
	}
}

// TestNewSamplerLeavesCallersConfigs: the agent hands the sampler the live
// config that status and reloads read while the sampler starts; the sampler
// decoded driver options into that very slice (a data race on SIGHUP and on
// a fleet config change). It now works on a copy.
func TestNewSamplerLeavesCallersConfigs(t *testing.T) {
	var doc struct {
		Sensors []Config `yaml:"sensors"`
	}
	if err := yamlUnmarshal("  - {name: a, driver: bme280, bus: /dev/i2c-1, address: 0x77}\n  - {name: b, driver: sim}\n", &doc); err != nil {
		t.Fatal(err)
	}
	if err := ValidateAll(doc.Sensors); err != nil {
		t.Fatal(err)
	}
	live := slices.Clone(doc.Sensors)
	if _, err := NewSampler(doc.Sensors, Options{}); err != nil {
		t.Fatal(err)
	}
	for i := range live {
		if doc.Sensors[i].Options != live[i].Options || doc.Sensors[i].Interval != live[i].Interval {
			t.Errorf("sensors[%d]: NewSampler rewrote the caller's config (options %p, was %p)", i, doc.Sensors[i].Options, live[i].Options)
		}
	}
}
