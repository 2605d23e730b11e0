package agent

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/sys/unix"

	"github.com/edge-agent/edge-agent/internal/human"
	"github.com/edge-agent/edge-agent/uplink"
)

// Verdict is how one doctor check came out.
type Verdict string

// Doctor verdicts.
const (
	CheckOK   Verdict = "ok"
	CheckWarn Verdict = "warn"
	CheckFail Verdict = "fail"
	CheckSkip Verdict = "skip"
)

// Check is one thing a technician would verify by hand, with the fix.
type Check struct {
	Name    string  `json:"name"`
	Verdict Verdict `json:"verdict"`
	Detail  string  `json:"detail"`
	Fix     string  `json:"fix,omitempty"`
}

// Doctor runs the checks; it needs no running daemon. The zero value is
// not useful: use NewDoctor.
type Doctor struct {
	// StepTimeout bounds each network step (DNS, TCP, TLS) and, doubled,
	// the leaf handshake that proves the credentials.
	StepTimeout time.Duration
	// ThrottledPath is the Raspberry Pi firmware's throttling flags.
	ThrottledPath string
	// ConfigSource says how the config path was chosen (the running
	// agent's, the default path); shown with the config check.
	ConfigSource string
}

// NewDoctor returns a doctor with the defaults for a real device.
func NewDoctor() *Doctor {
	return &Doctor{StepTimeout: 5 * time.Second, ThrottledPath: "/sys/devices/platform/soc/soc:firmware/get_throttled"}
}

// DoctorExit maps checks to the exit code: 0 all ok, 1 warnings, 2 failures.
func DoctorExit(checks []Check) int {
	code := 0
	for _, c := range checks {
		switch c.Verdict {
		case CheckFail:
			return 2
		case CheckWarn:
			code = 1
		}
	}
	return code
}

// A doctorCheck is one thing doctor verifies, as tailscale's doctor.Check:
// a name and a run that reports a Check per item it looks at (a secret
// file, a sensor's device, a hub URL); a Check without a name takes the
// doctorCheck's. cfg is nil when the config cannot be used: only the
// checks that need none run then.
type doctorCheck struct {
	name        string
	needsConfig bool
	run         func(ctx context.Context, d *Doctor, cfg *Config) []Check
}

// doctorChecks is doctor's list, after the config, in the order a
// technician would check by hand: the device first, then the way to the hub.
var doctorChecks = []doctorCheck{
	{name: "state_dir", needsConfig: true, run: func(_ context.Context, _ *Doctor, cfg *Config) []Check { return []Check{stateDirCheck(cfg.StateDir)} }},
	{name: "secrets", needsConfig: true, run: func(_ context.Context, _ *Doctor, cfg *Config) []Check { return secretChecks(cfg) }},
	{name: "sensors", needsConfig: true, run: func(_ context.Context, _ *Doctor, cfg *Config) []Check { return deviceChecks(cfg) }},
	{name: "clock", run: func(_ context.Context, d *Doctor, _ *Config) []Check { return []Check{d.clock()} }},
	{name: "power", run: func(_ context.Context, d *Doctor, _ *Config) []Check { return []Check{d.power()} }},
	{name: "hub", needsConfig: true, run: hubChecks},
}

// Run checks the config at path, then runs doctorChecks on it.
func (d *Doctor) Run(ctx context.Context, path string) []Check {
	from := ""
	if d.ConfigSource != "" {
		from = " (" + d.ConfigSource + ")"
	}
	cfg, err := LoadConfig(path)
	if err == nil {
		err = CheckServer(cfg)
	}
	var checks []Check
	if err != nil {
		cfg = nil
		checks = []Check{{Name: "config", Verdict: CheckFail, Detail: err.Error() + from, Fix: configFix(path, err)}}
	} else {
		checks = []Check{{Name: "config", Verdict: CheckOK, Detail: fmt.Sprintf("%s is valid (site %s)%s", path, cfg.Site, from)}}
	}
	for _, c := range doctorChecks {
		if c.needsConfig && cfg == nil {
			continue
		}
		for _, r := range c.run(ctx, d, cfg) {
			if r.Name == "" {
				r.Name = c.name
			}
			checks = append(checks, r)
		}
	}
	return checks
}

// hubChecks checks each hub URL; standalone is no failure.
func hubChecks(ctx context.Context, d *Doctor, cfg *Config) []Check {
	if cfg.Uplink == nil {
		return []Check{{Verdict: CheckSkip, Detail: "no uplink configured: standalone"}}
	}
	var out []Check
	for _, u := range cfg.Uplink.HubURLs {
		out = append(out, d.hub(ctx, cfg, u)...)
	}
	return out
}

// configFix is what to do about a config that cannot be used: the key to
// change when one is named, else the file to create.
func configFix(path string, err error) string {
	recheck := "`edge-agent check-config " + path + "` re-checks it"
	var ce *ConfigError
	if _, serr := os.Stat(path); serr != nil {
		return "create " + path + " (the package installs one; `edge-agent sensors sample sim` prints a sensor entry) or name the config with --config FILE"
	}
	file := path
	if errors.As(err, &ce) {
		file = ce.File
		switch {
		case ce.Key != "":
			return fmt.Sprintf("change %s in %s; %s", ce.Key, file, recheck)
		case ce.Line > 0:
			return fmt.Sprintf("fix line %d of %s; %s", ce.Line, file, recheck)
		}
	}
	return fmt.Sprintf("fix %s; %s", file, recheck)
}

// stateDirCheck: the store must be writable and its filesystem neither
// full nor read-only, or readings cannot be kept. A missing directory is
// fine when run can create it (it does, at start).
func stateDirCheck(dir string) Check {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		parent := filepath.Dir(dir)
		for parent != filepath.Dir(parent) {
			if _, err := os.Stat(parent); err == nil {
				break
			}
			parent = filepath.Dir(parent)
		}
		if unix.Access(parent, unix.W_OK|unix.X_OK) == nil {
			return Check{Verdict: CheckOK, Detail: fmt.Sprintf("%s does not exist yet: run creates it (%s is writable)", dir, parent)}
		}
		return Check{Verdict: CheckWarn, Detail: fmt.Sprintf("%s does not exist and this user may not create it in %s", dir, parent),
			Fix: "run doctor as the agent's user, or create it: `install -d -o edge-agent -m 0750 " + dir + "`"}
	}
	if err != nil {
		return Check{Verdict: CheckFail, Detail: fmt.Sprintf("%s: %v", dir, err), Fix: "install the package (it creates it) or `install -d -o edge-agent -m 0750 " + dir + "`"}
	}
	if !fi.IsDir() {
		return Check{Verdict: CheckFail, Detail: dir + " is not a directory"}
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return Check{Verdict: CheckFail, Detail: fmt.Sprintf("statfs %s: %v", dir, err)}
	}
	if int64(fs.Flags)&unix.ST_RDONLY != 0 {
		return Check{Verdict: CheckFail, Detail: dir + " is on a read-only filesystem", Fix: "check the SD card/disk (dmesg) and remount read-write"}
	}
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		return Check{Verdict: CheckFail, Detail: fmt.Sprintf("cannot write in %s: %v", dir, err), Fix: "chown -R edge-agent: " + dir + " (run doctor as the agent's user to check its rights)"}
	}
	f.Close()
	os.Remove(f.Name())
	free, total := fs.Bavail*uint64(fs.Bsize), fs.Blocks*uint64(fs.Bsize)
	detail := fmt.Sprintf("%s writable, %s free of %s", dir, fmtBytes(free), fmtBytes(total))
	switch {
	case float64(free) < diskCriticalFree*float64(total):
		return Check{Verdict: CheckFail, Detail: detail + ": disk full", Fix: "free space on that filesystem or lower buffer.max_bytes"}
	case float64(free) < diskWarnFree*float64(total):
		return Check{Verdict: CheckWarn, Detail: detail + ": nearly full", Fix: "free space on that filesystem or lower buffer.max_bytes"}
	}
	return Check{Verdict: CheckOK, Detail: detail}
}

// secretChecks: secrets must be private (like ssh keys) and the client
// certificate not expired.
func secretChecks(cfg *Config) []Check {
	u := cfg.Uplink
	if u == nil {
		return nil
	}
	var out []Check
	for _, f := range []struct{ key, path string }{{"uplink.credentials", u.Credentials}, {"uplink.nkey_seed", u.NkeySeed}, {"uplink.tls.key_file", u.TLS.KeyFile}} {
		if f.path == "" {
			continue
		}
		fi, err := os.Stat(f.path)
		switch {
		case err != nil:
			out = append(out, Check{Verdict: CheckFail, Detail: fmt.Sprintf("%s %s: %v", f.key, f.path, err)})
		case fi.Mode().Perm()&0o077 != 0:
			out = append(out, Check{Verdict: CheckFail, Detail: fmt.Sprintf("%s %s is readable by group or others (mode %04o)", f.key, f.path, fi.Mode().Perm()), Fix: "chmod 600 " + f.path})
		default:
			out = append(out, Check{Verdict: CheckOK, Detail: fmt.Sprintf("%s %s is private (mode %04o)", f.key, f.path, fi.Mode().Perm())})
		}
	}
	if u.TLS.CertFile != "" {
		out = append(out, certFileCheck(u.TLS.CertFile))
	}
	return out
}

func certFileCheck(path string) Check {
	data, err := os.ReadFile(path)
	if err != nil {
		return Check{Verdict: CheckFail, Detail: fmt.Sprintf("uplink.tls.cert_file: %v", err)}
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return Check{Verdict: CheckFail, Detail: fmt.Sprintf("uplink.tls.cert_file %s holds no PEM certificate", path)}
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return Check{Verdict: CheckFail, Detail: fmt.Sprintf("uplink.tls.cert_file %s: %v", path, err)}
	}
	left := time.Until(cert.NotAfter)
	detail := fmt.Sprintf("client certificate %s (%s)", path, certLife(cert, time.Now()))
	switch {
	case left <= 0:
		return Check{Verdict: CheckFail, Detail: detail, Fix: "install a renewed client certificate"}
	case left < 14*24*time.Hour:
		return Check{Verdict: CheckWarn, Detail: detail, Fix: "renew the client certificate soon"}
	}
	return Check{Verdict: CheckOK, Detail: detail}
}

func certLife(c *x509.Certificate, now time.Time) string {
	if now.After(c.NotAfter) {
		return "certificate expired " + human.Days(now.Sub(c.NotAfter)) + " ago"
	}
	if now.Before(c.NotBefore) {
		return "certificate not valid until " + c.NotBefore.UTC().Format(time.RFC3339) + " (is the device clock right?)"
	}
	return "expires in " + human.Days(c.NotAfter.Sub(now))
}

// deviceChecks: every /dev or /sys path in a sensor's driver options must
// exist and be accessible to this user; drivers name their buses there
// (bus: /dev/i2c-1, chip: /dev/gpiochip0, device: /sys/bus/w1/...).
func deviceChecks(cfg *Config) []Check {
	var out []Check
	for _, s := range cfg.Sensors {
		for _, p := range devicePaths(s.Options) {
			mode := uint32(unix.R_OK)
			if strings.HasPrefix(p, "/dev/") {
				mode |= unix.W_OK
			}
			name := "sensor " + s.Name
			switch err := unix.Access(p, mode); {
			case err == nil:
				out = append(out, Check{Name: name, Verdict: CheckOK, Detail: fmt.Sprintf("%s (%s) present and accessible", p, s.Driver)})
			case errors.Is(err, unix.ENOENT):
				out = append(out, Check{Name: name, Verdict: CheckFail, Detail: fmt.Sprintf("%s (%s) not present", p, s.Driver), Fix: busFix(p)})
			default:
				out = append(out, Check{Name: name, Verdict: CheckFail, Detail: fmt.Sprintf("%s (%s): %v", p, s.Driver, err), Fix: "add the agent's user to the device's group (ls -l " + p + "), e.g. usermod -aG i2c,gpio edge-agent"})
			}
		}
	}
	return out
}

func busFix(p string) string {
	switch {
	case strings.Contains(p, "i2c"):
		return "enable I2C (raspi-config nonint do_i2c 0, or dtparam=i2c_arm=on) and check the wiring; `i2cdetect -y 1` lists devices"
	case strings.Contains(p, "w1"):
		return "enable 1-Wire (dtoverlay=w1-gpio in config.txt) and check the sensor's wiring; ls /sys/bus/w1/devices"
	case strings.Contains(p, "gpio"):
		return "check the GPIO chip name: ls /dev/gpiochip*"
	}
	return "check the path in the sensor's config"
}

// devicePaths finds string fields holding /dev/ or /sys/ paths in a
// driver's options struct.
func devicePaths(opts any) []string {
	v := reflect.ValueOf(opts)
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if f.Kind() == reflect.String && v.Type().Field(i).IsExported() {
			if s := f.String(); strings.HasPrefix(s, "/dev/") || strings.HasPrefix(s, "/sys/") {
				out = append(out, filepath.Clean(s))
			}
		}
	}
	return out
}

// clock fails only on a time that is certainly wrong (before the build);
// an unsynchronised clock is fine when it agrees with the hub, which
// `edge-agent status` measures while the agent runs.
func (d *Doctor) clock() Check {
	now, floor := time.Now(), ClockFloor()
	if now.Before(floor) {
		return Check{Verdict: CheckFail, Detail: fmt.Sprintf("reads %s, before this build (%s): readings would be stamped wrong, TLS certificates look not yet valid", now.UTC().Format(time.RFC3339), floor.Format(time.DateOnly)),
			Fix: "set the time: timedatectl set-ntp true and allow NTP (UDP 123) out, or fit an RTC"}
	}
	c := clockStatus()
	switch c.State {
	case ClockSynced:
		return Check{Verdict: CheckOK, Detail: "synchronised (kernel NTP status)"}
	case ClockUnsynced:
		return Check{Verdict: CheckOK, Detail: "not NTP-synchronised but plausible (after this build's date); `edge-agent status` shows its offset from the hub's clock"}
	}
	return Check{Verdict: CheckWarn, Detail: c.Error}
}

// power reads the Pi firmware's throttling flags: under-voltage corrupts SD
// cards, the most common cause of a dead store.
func (d *Doctor) power() Check {
	data, err := os.ReadFile(d.ThrottledPath)
	if err != nil {
		return Check{Verdict: CheckSkip, Detail: "no Raspberry Pi throttling flags (" + d.ThrottledPath + ")"}
	}
	s := strings.TrimPrefix(strings.TrimSpace(string(data)), "throttled=")
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 32)
	if err != nil {
		return Check{Verdict: CheckWarn, Detail: fmt.Sprintf("cannot parse %s: %q", d.ThrottledPath, s)}
	}
	const fix = "use the official power supply (5.1 V, 3 A) and a short cable; check the SD card afterwards"
	switch {
	case v&0x1 != 0:
		return Check{Verdict: CheckFail, Detail: fmt.Sprintf("under-voltage now (flags 0x%x)", v), Fix: fix}
	case v&0x4 != 0:
		return Check{Verdict: CheckWarn, Detail: fmt.Sprintf("CPU throttled now (flags 0x%x): check cooling", v), Fix: "improve cooling; check the supply"}
	case v&0x10000 != 0:
		return Check{Verdict: CheckWarn, Detail: fmt.Sprintf("under-voltage occurred since boot (flags 0x%x)", v), Fix: fix}
	case v&0x40000 != 0:
		return Check{Verdict: CheckWarn, Detail: fmt.Sprintf("throttling occurred since boot (flags 0x%x)", v), Fix: "improve cooling; check the supply"}
	}
	return Check{Verdict: CheckOK, Detail: "no under-voltage or throttling since boot"}
}

// hub walks one hub URL step by step (DNS, TCP, TLS with uplink's probe,
// then auth) and reports the first step that fails, so the technician knows
// whom to call: the network team, the firewall, the PKI or the hub operator.
// Once the hub accepts the leaf, the leaf permissions and hub stream lines
// follow (leafSteps).
func (d *Doctor) hub(ctx context.Context, cfg *Config, raw string) []Check {
	u, err := url.Parse(raw)
	if err != nil {
		return []Check{{Verdict: CheckFail, Detail: fmt.Sprintf("%s: %v", raw, err)}}
	}
	shown := uplink.Config{HubURLs: []string{raw}}
	shown = shown.Redacted()
	label := shown.HubURLs[0]
	one := *cfg.Uplink
	one.HubURLs = []string{raw}
	p := uplink.ProbeHub(ctx, &one, u, d.StepTimeout)
	fail := func(class uplink.ReasonClass, detail string) Check {
		if len(p.Passed) > 0 {
			detail += " (" + strings.Join(p.Passed, ", ") + " ok)"
		}
		fix := uplink.FixFor(cfg.Uplink, class, detail)
		switch {
		case fix != "":
		case class == uplink.ReasonOther:
			// reasonFix would send the technician back to doctor.
			fix = "the hub ended the leaf handshake without saying why here: ask the hub operator what the hub logged for this site's connection"
		default:
			fix = reasonFix(class)
		}
		return Check{Verdict: CheckFail, Detail: label + ": " + detail, Fix: fix}
	}
	if p.Failed != "" {
		class, detail := probeDetail(p, u.Hostname())
		return []Check{fail(class, detail)}
	}
	class, reason, leaf := d.authStep(ctx, cfg, raw, func(s *server.Server) []Check { return d.leafSteps(ctx, cfg, label, s) })
	if class != "" {
		return []Check{fail(class, reason)}
	}
	detail := label + ": DNS, TCP"
	if c := p.HubCert; c != nil {
		detail += fmt.Sprintf(", TLS (%s issued by %s, %s)", c.Subject.CommonName, c.Issuer.CommonName, certLife(c, time.Now()))
	}
	return append([]Check{{Verdict: CheckOK, Detail: detail + ", auth ok"}}, leaf...)
}

// probeDetail words a failed probe for the technician at the device: the
// hub's certificate by what is wrong with it and since when; the status
// reason where doctor has nothing to add.
func probeDetail(p uplink.HubProbe, host string) (class uplink.ReasonClass, detail string) {
	var de *net.DNSError
	var ci x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	switch {
	case p.Failed == uplink.StepDNS && errors.As(p.Err, &de) && de.IsNotFound:
		return uplink.ReasonDNS, "DNS: " + host + " not found"
	case p.Failed == uplink.StepDNS:
		return uplink.ReasonDNS, "DNS: " + p.Err.Error()
	case p.Failed == uplink.StepTCP && errors.Is(p.Err, unix.ECONNREFUSED):
		return uplink.ReasonTCP, "TCP: connection refused by " + p.Addr
	case p.Failed == uplink.StepTCP:
		return uplink.ReasonTCP, "TCP: " + p.Err.Error()
	case p.Failed == uplink.StepINFO:
		return uplink.ReasonTLS, fmt.Sprintf("TLS: no NATS INFO before the handshake (%v): is handshake_first needed, or is this not a NATS leafnode port?", p.Err)
	case errors.As(p.Err, &ci) && ci.Reason == x509.Expired:
		return uplink.ReasonTLS, "TLS: " + certLife(ci.Cert, time.Now())
	case errors.As(p.Err, &ua):
		return uplink.ReasonTLS, fmt.Sprintf("TLS: certificate signed by an unknown authority (issuer %q): wrong uplink.tls.ca_file?", p.HubCert.Issuer.CommonName)
	case errors.As(p.Err, &he):
		return uplink.ReasonTLS, fmt.Sprintf("TLS: certificate is not for %s (it is for %s): set uplink.tls.server_name or fix the URL", he.Host, strings.Join(append(he.Certificate.DNSNames, ipStrings(he.Certificate.IPAddresses)...), ", "))
	}
	return p.Class, p.Reason
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// authStep proves the credentials the only exact way: a leafnode port does
// not accept a client CONNECT, so a throwaway in-process server (no client
// port, no JetStream) dials the hub with this remote alone and reports
// whether the hub accepted the leaf connection. Its log lines are read as
// the link reads them, so a refusal names the configured method. Once
// accepted, then runs on the connected test leaf.
func (d *Doctor) authStep(ctx context.Context, cfg *Config, raw string, then func(*server.Server) []Check) (class uplink.ReasonClass, reason string, more []Check) {
	one := *cfg.Uplink
	one.HubURLs = []string{raw}
	remote, err := uplink.RemoteOptions(&one)
	if err != nil {
		return uplink.ReasonAuth, "auth: " + err.Error(), nil
	}
	// The local account is never shown to the hub; the global one lets
	// leafSteps' in-process client use the leaf.
	remote.LocalAccount = ""
	opts := &server.Options{
		ServerName: "edge-agent-doctor-" + cfg.Site, DontListen: true, NoSigs: true, NoSystemAccount: true,
		LeafNode: server.LeafNodeOpts{Remotes: []*server.RemoteLeafOpts{remote}, ReconnectInterval: 250 * time.Millisecond},
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return uplink.ReasonOther, "cannot build the test leaf: " + err.Error(), nil
	}
	logs := &leafErrors{}
	s.SetLoggerV2(logs, false, false, false)
	go s.Start()
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	deadline := time.Now().Add(2 * d.StepTimeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if s.NumLeafNodes() > 0 {
			return "", "", then(s)
		}
		if _, r, ok := logs.classified(&one, uplink.ReasonAuth); ok {
			return uplink.ReasonAuth, r, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c, r, ok := logs.classified(&one, ""); ok {
		return c, fmt.Sprintf("no leaf connection within %s: %s", 2*d.StepTimeout, r), nil
	}
	return uplink.ReasonOther, fmt.Sprintf("no leaf connection within %s (the hub accepted TCP and TLS but did not complete the leaf handshake)", 2*d.StepTimeout), nil
}

// leafErrors keeps the test leaf's error lines to classify the failure.
type leafErrors struct {
	mu    sync.Mutex
	lines []string
}

func (l *leafErrors) add(f string, v []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(f, v...))
}

// classified is the newest line the link would read as a reason of class
// (any class when empty): its class and reason as status words them.
func (l *leafErrors) classified(c *uplink.Config, class uplink.ReasonClass) (uplink.ReasonClass, string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.lines) - 1; i >= 0; i-- {
		if cl, r, ok := uplink.ClassifyLine(c, l.lines[i]); ok && (class == "" || cl == class) {
			return cl, r, true
		}
	}
	return "", "", false
}
func (l *leafErrors) Noticef(string, ...any)    {}
func (l *leafErrors) Debugf(string, ...any)     {}
func (l *leafErrors) Tracef(string, ...any)     {}
func (l *leafErrors) Warnf(f string, v ...any)  { l.add(f, v) }
func (l *leafErrors) Errorf(f string, v ...any) { l.add(f, v) }
func (l *leafErrors) Fatalf(f string, v ...any) { l.add(f, v) }
