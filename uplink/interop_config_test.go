package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/agent/fleetconfig"
	"github.com/edge-agent/edge-agent/internal/testkit"
)

// Remote config against Debian's nats-server (2.9 on bookworm) as the hub:
// the bucket, compare-and-set and the revision scan work there, and a
// site behind Protect syncs its key through the leaf, including a change
// made while its WAN was down.
func TestInteropStockHubRemoteConfig(t *testing.T) {
	hub := startExtHub(t)
	t.Logf("hub: %s", hub.version)
	w := newExtWANEnv(t, "store-rc", hub)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kv, err := fleetconfig.EnsureBucket(ctx, w.hubJS, 1)
	if err != nil {
		t.Fatalf("config bucket on %s: %v", hub.version, err)
	}
	key := fleetconfig.SiteKey("store-rc")
	rev1, err := fleetconfig.Put(ctx, kv, key, []byte("log_level: debug\n"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var conflict *fleetconfig.ErrConflict
	if _, err := fleetconfig.Put(ctx, kv, key, []byte("log_level: warn\n"), 0); !errors.As(err, &conflict) || conflict.Current != rev1 {
		t.Fatalf("blind overwrite on %s: %v", hub.version, err)
	}

	// The site side, as the agent runs it: its own connection (local
	// inboxes) to the leaf, the local copy in the site's domain.
	nc, js := testkit.Connect(t, w.leaf.ClientURL(), nats.CustomInboxPrefix(LocalInboxPrefix))
	local, err := fleetconfig.OpenLocal(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	hubJS, err := jetstream.NewWithDomain(nc, "hub")
	if err != nil {
		t.Fatal(err)
	}
	linkConn := func() uint64 {
		lz, err := w.leaf.Leafz(nil)
		if err != nil || len(lz.Leafs) == 0 {
			return 0
		}
		return lz.Leafs[0].ID
	}
	sctx, scancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s := &fleetconfig.Syncer{Hub: hubJS, Local: local, Keys: fleetconfig.KeysFor("store-rc", []string{"north"}), LinkConn: linkConn,
		Changed: make(chan struct{}, 1), Problem: func(p string) { t.Logf("sync problem: %q", p) }, Log: slog.Default(), Poll: 100 * time.Millisecond}
	go func() { done <- s.Run(sctx) }()
	t.Cleanup(func() { scancel(); <-done })
	has := func(rev uint64, what string) func() error {
		return func() error {
			m, err := local.Read(ctx, []string{key})
			if err != nil || m[key].Rev != rev {
				return fmt.Errorf("still waiting for %s (revision %d): %v, have %d", what, rev, err, m[key].Rev)
			}
			return nil
		}
	}
	testkit.WaitFor(t, 30*time.Second, has(rev1, "the site's copy of its key"))

	if err := w.proxy.Unplug(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 15*time.Second, func() error {
		if linkConn() != 0 {
			return errors.New("still waiting for link down")
		}
		return nil
	})
	rev2, err := fleetconfig.Put(ctx, kv, key, []byte("log_level: warn\n"), rev1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, has(rev2, "the change made during the outage"))
	latest, err := fleetconfig.Latest(ctx, kv)
	if err != nil || latest[key] != rev2 {
		t.Fatalf("revision scan on %s: %v %v", hub.version, latest, err)
	}
}
