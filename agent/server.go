package agent

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/uplink"
)

// serverOptions builds the embedded nats-server's options. With nats_config
// the file is the base and the agent's own keys are applied on top, because
// the domain, store and sync policy are the agent's durability contract.
func serverOptions(c *Config, log *slog.Logger) (*server.Options, error) {
	opts := &server.Options{}
	if c.NATSConfig != "" {
		fo, err := server.ProcessConfigFile(c.NATSConfig)
		if err != nil {
			return nil, &ConfigError{File: c.NATSConfig, Key: "nats_config", Msg: fmt.Sprintf("nats-server rejects it: %v", err)}
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
		return nil, err
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts.Host, opts.Port = host, port
	if opts.ServerName == "" {
		// "<site>-<8 hex of the machine id>": two devices with one site id
		// are told apart at the hub instead of evicting each other.
		if opts.ServerName, err = uplink.DeriveServerName(c.Site, c.StateDir); err != nil {
			return nil, fmt.Errorf("server name: %w (set server_name in agent.yaml to choose one)", err)
		}
	}
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
	if c.LocalAuth.User != "" {
		opts.Username, opts.Password = c.LocalAuth.User, c.LocalAuth.Password
	}
	if c.LocalAuth.Token != "" {
		opts.Authorization = c.LocalAuth.Token
	}
	setLocalPermissions(opts, c.Site)
	if c.MonitorListen != "" {
		mh, mp, err := splitListen(c.MonitorListen)
		if err != nil {
			return nil, &ConfigError{File: c.Path, Key: "monitor_listen", Msg: err.Error()}
		}
		opts.HTTPHost, opts.HTTPPort = mh, mp
	}
	if c.Uplink != nil {
		r, err := uplink.RemoteOptions(c.Uplink)
		if err != nil {
			return nil, &ConfigError{File: c.Path, Key: "uplink", Msg: err.Error()}
		}
		// The remote dials through the uplink link's gate, which paces
		// attempts with backoff; the server's own retry only keeps it
		// knocking at the gate.
		if err := uplink.GateRemote(r); err != nil {
			return nil, err
		}
		if !c.Uplink.AllowRemoteAdmin {
			r.DenyImports = append(slices.Clip(r.DenyImports), uplink.RemoteAdminDenies(c.Site)...)
		}
		opts.LeafNode.Remotes = append(opts.LeafNode.Remotes, r)
		opts.LeafNode.ReconnectInterval = uplink.ServerReconnectInterval(c.Uplink)
	}
	return opts, nil
}
