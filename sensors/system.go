package sensors

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SystemOptions configures the gateway's own health: the first thing a
// technician should see, because an under-powered or overheating Pi makes
// every other sensor lie.
type SystemOptions struct {
	// Path whose filesystem's free space is reported; default: the agent's
	// state_dir (a full store is what stops buffering).
	Path string `yaml:"path"`
	// Roots are configurable so tests can use a fake tree.
	ThermalRoot string `yaml:"thermal_root"`
	ProcRoot    string `yaml:"proc_root"`
	// Throttled is the Raspberry Pi firmware's flags file; when it is
	// absent, `vcgencmd get_throttled` is tried; neither: not a Pi, no
	// throttling metrics.
	Throttled string `yaml:"throttled"`
	Vcgencmd  string `yaml:"vcgencmd"`
}

type systemDriver struct{ o SystemOptions }

func init() {
	Register(Registration{
		Name: "system",
		Options: func() any {
			return &SystemOptions{ThermalRoot: "/sys/class/thermal", ProcRoot: "/proc",
				Throttled: "/sys/devices/platform/soc/soc:firmware/get_throttled", Vcgencmd: "vcgencmd"}
		},
		New: func(c Config, o any, env Env) (Driver, error) {
			opts := *o.(*SystemOptions)
			if opts.Path == "" {
				opts.Path = env.StateDir
			}
			if opts.Path == "" {
				opts.Path = "/"
			}
			return &systemDriver{o: opts}, nil
		},
		Sample: `# The gateway itself. Metrics: soc_temp (C), load1, mem_available (%),
# disk_free (%) and disk_free_mb of the state_dir, and on a Raspberry Pi the
# firmware flags (0/1): under_voltage, freq_capped, throttled, soft_temp_limit,
# and *_occurred since boot for each.
- name: gateway
  driver: system
  interval: 30s
  # path: /var/lib/edge-agent   # default: the agent's state_dir
  alert_metric: under_voltage   # alerts.gateway when the power supply sags
  alert_above: 0.5
`,
	})
}

// throttleBits are the firmware's get_throttled bits (Raspberry Pi docs).
var throttleBits = []struct {
	bit  uint
	name string
}{
	{0, "under_voltage"}, {1, "freq_capped"}, {2, "throttled"}, {3, "soft_temp_limit"},
	{16, "under_voltage_occurred"}, {17, "freq_capped_occurred"}, {18, "throttled_occurred"}, {19, "soft_temp_limit_occurred"},
}

func (d *systemDriver) Read(ctx context.Context) (map[string]Value, error) {
	out := map[string]Value{}
	var st unix.Statfs_t
	if err := unix.Statfs(d.o.Path, &st); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", d.o.Path, err)
	}
	free := float64(st.Bavail) * float64(st.Bsize)
	out["disk_free_mb"] = Value{V: round(free/(1<<20), 1), Unit: "MiB"}
	if st.Blocks > 0 {
		out["disk_free"] = Value{V: round(100*float64(st.Bavail)/float64(st.Blocks), 1), Unit: "%"}
	}
	if t, err := socTemp(d.o.ThermalRoot); err == nil {
		out["soc_temp"] = Value{V: t, Unit: "C"}
	}
	if b, err := os.ReadFile(filepath.Join(d.o.ProcRoot, "loadavg")); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				out["load1"] = Value{V: v}
			}
		}
	}
	if pct, err := memAvailable(filepath.Join(d.o.ProcRoot, "meminfo")); err == nil {
		out["mem_available"] = Value{V: pct, Unit: "%"}
	}
	if flags, ok := d.throttled(ctx); ok {
		for _, b := range throttleBits {
			out[b.name] = Value{V: float64(flags >> b.bit & 1)}
		}
	}
	return out, nil
}

// socTemp prefers the zone typed cpu-thermal (Pi) and falls back to zone 0.
func socTemp(root string) (float64, error) {
	zones, _ := filepath.Glob(filepath.Join(root, "thermal_zone*"))
	if len(zones) == 0 {
		return 0, errors.New("no thermal zones")
	}
	pick := zones[0]
	for _, z := range zones {
		if typ, err := os.ReadFile(filepath.Join(z, "type")); err == nil && strings.Contains(string(typ), "cpu") {
			pick = z
			break
		}
	}
	b, err := os.ReadFile(filepath.Join(pick, "temp"))
	if err != nil {
		return 0, err
	}
	milli, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s/temp: %q", pick, b)
	}
	return float64(milli) / 1000, nil
}

func memAvailable(path string) (float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total, avail float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "MemTotal":
			total = kb
		case "MemAvailable":
			avail = kb
		}
	}
	if total == 0 {
		return 0, fmt.Errorf("%s: no MemTotal", path)
	}
	return round(100*avail/total, 1), nil
}

// throttled reads the firmware flags: the sysfs file (Pi kernels with
// raspberrypi-hwmon) or vcgencmd ("throttled=0x50005").
func (d *systemDriver) throttled(ctx context.Context) (uint64, bool) {
	b, err := os.ReadFile(d.o.Throttled)
	if errors.Is(err, fs.ErrNotExist) && d.o.Vcgencmd != "" {
		if _, lerr := exec.LookPath(d.o.Vcgencmd); lerr == nil {
			b, err = exec.CommandContext(ctx, d.o.Vcgencmd, "get_throttled").Output()
		}
	}
	if err != nil || len(b) == 0 {
		return 0, false
	}
	s := string(bytes.TrimSpace(b))
	s = strings.TrimPrefix(s, "throttled=")
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 32)
	return v, err == nil
}

func (d *systemDriver) Close() error { return nil }
