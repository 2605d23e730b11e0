// Package hubops is the hub operator's side of edge-agent, not the site's
// WAN link: the hub stream that ingests every site's forwarded readings
// (`edge-agent hub init`), each site's leaf user and its permissions, the
// hub-pulls (sourcing) alternative to the forwarder, and the fleet view
// over the sites' heartbeats (`edge-agent fleet`). Of uplink it imports
// only the heartbeat's wire types (uplink/wire), so uplink's own tests can
// build their hubs and fleet tables with it.
package hubops
