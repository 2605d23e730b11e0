// Package hubops is the hub operator's side of edge-agent, not the site's
// WAN link: the hub stream that ingests every site's forwarded readings
// (`edge-agent hub init`), each site's leaf user and its permissions, and
// the hub-pulls (sourcing) alternative to the forwarder. It imports
// nothing of uplink, so uplink's own tests can build their hubs with it.
package hubops
