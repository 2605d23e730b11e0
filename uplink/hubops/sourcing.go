package hubops

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SourcingStreamConfig is the "hub pulls" alternative to the forwarder: a
// hub stream that sources the site's local streams over the leaf through
// the site's JetStream domain ($JS.<site>.API), renaming subjects to the
// same <prefix>.<site>.<local subject> the forwarder uses. The hub then owns
// progress (its consumer on the site); the site needs no forwarder, but
// there is no alerts-first priority, no bandwidth cap, no Edge-* headers or
// per-site cursor in state.db, and one stream per site at the hub.
// Deliveries travel on <prefix>.<site>.deliver.>, which the site's leaf
// user may already publish (SitePermissions).
func SourcingStreamConfig(name, prefix, site string, streams []string, dupWindow time.Duration) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name:        name,
		Description: "edge-agent hub-pulls ingest of site " + site,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  dupWindow,
	}
	for _, s := range streams {
		cfg.Sources = append(cfg.Sources, &jetstream.StreamSource{
			Name: s,
			External: &jetstream.ExternalStream{
				APIPrefix:     "$JS." + site + ".API",
				DeliverPrefix: prefix + "." + site + ".deliver",
			},
			SubjectTransforms: []jetstream.SubjectTransformConfig{{Source: ">", Destination: prefix + "." + site + ".>"}},
		})
	}
	return cfg
}
