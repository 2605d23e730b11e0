package agent

import (
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// listenPoll is how often the start waits for the embedded server's client
// listener.
const listenPoll = time.Millisecond

// waitListening waits up to d for the embedded server to accept clients.
// Server.ReadyForConnections polls in 25 ms steps, longer than the server
// itself takes to start with an empty store, and READY waited for that
// step on every start. The client listener is the last thing Start opens,
// so its address is polled (a cheap read) in short steps first; then
// ReadyForConnections confirms every listener, normally at its first
// check.
func waitListening(srv *server.Server, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for srv.Addr() == nil && time.Now().Before(deadline) {
		time.Sleep(listenPoll)
	}
	return srv.ReadyForConnections(max(time.Until(deadline), listenPoll))
}
