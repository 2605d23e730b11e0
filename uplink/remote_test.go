package uplink

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/internal/wanfault"
)

// A hub advertises a leafnode address (here a trap listener standing in
// for a cluster-internal address); the site reaches the hub only through a
// WAN proxy. When the WAN is cut, a leaf that took the advertised address
// dials it first on every redial; with uplink.ignore_discovered_urls (the
// default) it keeps to hub_urls. The "false" case proves the setup would
// catch a dial to the discovered address.
func TestRemoteIgnoresDiscoveredURLs(t *testing.T) {
	for _, ignore := range []bool{true, false} {
		t.Run(fmt.Sprintf("ignore_discovered_urls=%v", ignore), func(t *testing.T) {
			trap, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var trapped atomic.Int32
			go func() {
				for {
					c, err := trap.Accept()
					if err != nil {
						return // closed by the cleanup
					}
					trapped.Add(1)
					_ = c.Close()
				}
			}()
			t.Cleanup(func() { _ = trap.Close() })
			var proxy *wanfault.Proxy
			dials := &dialLog{}
			var lo *server.Options
			e := newFwEnv(t, "s1", fwEnvOpts{
				hub:       func(o *server.Options) { o.LeafNode.Advertise = trap.Addr().String() },
				cfg:       func(c *Config) { c.IgnoreDiscoveredURLs = ignore },
				leaf:      func(o *server.Options) { lo = o },
				remoteURL: proxyRemote(t, &proxy),
			})
			if got := lo.LeafNode.Remotes[0].IgnoreDiscoveredServers; got != ignore {
				t.Fatalf("leaf remote IgnoreDiscoveredServers = %v, want %v from the config", got, ignore)
			}
			e.leaf.SetLoggerV2(dials, true, false, false)
			e.leafUp()
			proxy.Cut()
			if !ignore {
				testkit.WaitFor(t, 20*time.Second, func() error {
					if trapped.Load() <= 0 {
						return errors.New("still waiting for a redial to the advertised address")
					}
					return nil
				})
				return
			}
			// Several redials, every one of them to the configured URL.
			testkit.WaitFor(t, 20*time.Second, func() error {
				if dials.count() < 5 {
					return errors.New("still waiting for five redials")
				}
				return nil
			})
			for _, host := range dials.hosts() {
				if host != proxy.Addr() {
					t.Errorf("leaf dialed %s, not the configured %s", host, proxy.Addr())
				}
			}
			if n := trapped.Load(); n != 0 {
				t.Fatalf("the advertised address was dialed %d times", n)
			}
		})
	}
}

// dialLog collects the hosts of the leaf's failed dials from the embedded
// server's error and debug lines.
type dialLog struct {
	mu sync.Mutex
	h  []string
}

func (d *dialLog) record(f string, v ...any) {
	// "Error trying to connect as leafnode to remote server %q (attempt %v): %v"
	if !strings.Contains(f, "trying to connect as leafnode") || len(v) == 0 {
		return
	}
	host, _ := v[0].(string)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.h = append(d.h, host)
}

func (d *dialLog) hosts() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.h...)
}

func (d *dialLog) count() int { return len(d.hosts()) }

func (d *dialLog) Noticef(string, ...any)    {}
func (d *dialLog) Warnf(string, ...any)      {}
func (d *dialLog) Fatalf(string, ...any)     {}
func (d *dialLog) Tracef(string, ...any)     {}
func (d *dialLog) Errorf(f string, v ...any) { d.record(f, v...) }
func (d *dialLog) Debugf(f string, v ...any) { d.record(f, v...) }

// uplink.compression is the leaf connection's compression mode as both
// servers report it: the default compresses with s2_fast even over a link
// with no round trip to speak of (nats-server's s2_auto would not), "off"
// turns it off both ways (the hub may not compress towards a site that
// refuses it), s2_best is what the site sends with; readings still arrive
// exactly once.
func TestRemoteCompression(t *testing.T) {
	for _, c := range []struct{ mode, leaf, hub string }{
		{"", server.CompressionS2Fast, ""},
		{server.CompressionOff, server.CompressionOff, server.CompressionOff},
		{server.CompressionS2Best, server.CompressionS2Best, ""},
	} {
		t.Run("mode="+c.mode, func(t *testing.T) {
			e := newFwEnv(t, "s1", fwEnvOpts{cfg: func(cfg *Config) {
				if c.mode != "" {
					cfg.Compression = c.mode
				}
			}})
			e.leafUp()
			for _, side := range []struct {
				name string
				srv  *server.Server
				want string
			}{{"leaf", e.leaf, c.leaf}, {"hub", e.hub, c.hub}} {
				lz, err := side.srv.Leafz(nil)
				if err != nil || len(lz.Leafs) != 1 {
					t.Fatalf("%s Leafz: %v, %+v", side.name, err, lz)
				}
				if got := lz.Leafs[0].Compression; side.want != "" && got != side.want {
					t.Fatalf("%s side compression %q, want %q", side.name, got, side.want)
				}
			}
			e.publishRandom("telemetry.x", 200, 128)
			e.start(nil)
			e.waitHub(200, 30*time.Second, "readings at the hub")
			e.checkExactlyOnce(e.hubMsgs(), "TELEMETRY", "telemetry.x", 1, 200)
		})
	}
}
