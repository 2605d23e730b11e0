package agent

import (
	"reflect"
)

// restartKeys lists the config keys whose change only takes effect after a
// restart: they shape the embedded server or its store.
func restartKeys(prev, next *Config) []string {
	var keys []string
	for _, k := range []struct {
		key  string
		a, b any
	}{
		{"site", prev.Site, next.Site}, {"state_dir", prev.StateDir, next.StateDir},
		{"listen", prev.Listen, next.Listen}, {"control_socket", prev.ControlSocket, next.ControlSocket},
		{"metrics_listen", prev.MetricsListen, next.MetricsListen}, {"monitor_listen", prev.MonitorListen, next.MonitorListen},
		{"log_format", prev.LogFormat, next.LogFormat}, {"server_name", prev.ServerName, next.ServerName},
		{"local_auth", prev.LocalAuth, next.LocalAuth}, {"nats_config", prev.NATSConfig, next.NATSConfig},
		{"buffer", prev.Buffer, next.Buffer}, {"uplink", prev.Uplink, next.Uplink},
		{"groups", prev.Groups, next.Groups}, {"remote_config", prev.RemoteConfig, next.RemoteConfig},
	} {
		if !reflect.DeepEqual(k.a, k.b) {
			keys = append(keys, k.key)
		}
	}
	return keys
}
