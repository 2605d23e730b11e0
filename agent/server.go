package agent

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/uplink"
)

// serverOptions builds the embedded nats-server's options for run: the
// merged options, the derived server name and the uplink's link gate, nil
// without an uplink. Like server.NewServer it runs nothing: the gate
// serves from its Start, and whoever gets it closes it.
func serverOptions(c *Config, log *slog.Logger) (*server.Options, *uplink.Gate, error) {
	opts, up, err := mergedOptions(c, log)
	if err != nil {
		return nil, nil, err
	}
	if opts.ServerName == "" {
		// "<site>-<8 hex of the machine id>": two devices with one site id
		// are told apart at the hub instead of evicting each other.
		if opts.ServerName, err = DeriveServerName(c.Site, c.StateDir); err != nil {
			return nil, nil, fmt.Errorf("server name: %w (set server_name in agent.yaml to choose one)", err)
		}
	}
	if up == nil {
		return opts, nil, nil
	}
	// The remote dials through the uplink link's gate, which paces
	// attempts with backoff; the server's own retry only keeps it
	// knocking at the gate.
	gate, err := uplink.GateRemote(up)
	if err != nil {
		return nil, nil, err
	}
	return opts, gate, nil
}

// mergedOptions is everything in the server's options that comes from
// configuration: with nats_config the file is the base and the agent's own
// keys are applied on top, because the domain, store and sync policy are
// the agent's durability contract. up is the uplink's remote, if any.
func mergedOptions(c *Config, log *slog.Logger) (opts *server.Options, up *server.RemoteLeafOpts, err error) {
	opts = &server.Options{}
	if c.NATSConfig != "" {
		fo, err := loadNATSConfig(c)
		if err != nil {
			return nil, nil, err
		}
		opts = fo
		for _, o := range []struct {
			set  bool
			name string
		}{
			{fo.StoreDir != "", "jetstream.store_dir"}, {fo.JetStreamDomain != "", "jetstream.domain"},
			{fo.SyncAlways || fo.SyncInterval != 0, "jetstream.sync_interval"},
		} {
			if o.set {
				log.Warn("nats_config key overridden by agent.yaml", "key", o.name, "file", c.NATSConfig)
			}
		}
	}
	host, port, err := splitListen(c.Listen)
	if err != nil {
		return nil, nil, &ConfigError{File: c.Path, Key: "listen", Msg: err.Error()}
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts.Host, opts.Port = host, port
	if c.ServerName != "" {
		opts.ServerName = c.ServerName
	}
	opts.NoSigs = true // the agent owns signals
	opts.JetStream = true
	opts.JetStreamDomain = c.Site
	// nats-server appends "jetstream" itself: the store is state_dir/jetstream.
	opts.StoreDir = c.StateDir
	// Explicit, never "free disk at boot" (nats-server#3641).
	opts.JetStreamMaxStore = c.Buffer.MaxFileStore()
	if opts.JetStreamMaxMemory == 0 {
		opts.JetStreamMaxMemory = 64 << 20
	}
	// Never inherit nats-server's default (fsync every 2 minutes, ack before
	// disk): set both explicitly from buffer.sync.
	opts.SyncAlways = c.Buffer.SyncAlways()
	opts.SyncInterval = c.Buffer.SyncInterval()
	if opts.SyncAlways {
		opts.SyncInterval = 2 * time.Minute
	}
	if err := applyLocalAuth(c, opts); err != nil {
		return nil, nil, err
	}
	setLocalPermissions(opts, c.Site)
	if c.MonitorListen != "" {
		mh, mp, err := splitListen(c.MonitorListen)
		if err != nil {
			return nil, nil, &ConfigError{File: c.Path, Key: "monitor_listen", Msg: err.Error()}
		}
		opts.HTTPHost, opts.HTTPPort = mh, mp
	}
	// nats_config's remotes get the uplink remote's boundary;
	// uplink.allow_remote_admin is the uplink remote's key and never opens
	// theirs.
	for _, r := range opts.LeafNode.Remotes {
		uplink.Protect(r, c.Site, false)
	}
	if c.Uplink != nil {
		r, err := uplink.RemoteOptions(c.Uplink)
		if err != nil {
			return nil, nil, &ConfigError{File: c.Path, Key: "uplink", Msg: err.Error()}
		}
		if err := duplicateRemote(c, opts.LeafNode.Remotes, r); err != nil {
			return nil, nil, err
		}
		uplink.Protect(r, c.Site, c.Uplink.AllowRemoteAdmin)
		opts.LeafNode.Remotes = append(opts.LeafNode.Remotes, r)
		opts.LeafNode.ReconnectInterval = uplink.ServerReconnectInterval(c.Uplink)
		up = r
	}
	return opts, up, nil
}
