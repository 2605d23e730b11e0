// Package jsclient runs one-shot JetStream jobs on a client connection of
// their own: the demo creating its hub's streams, chaos and the peer
// benchmark probing whether a child process is ready. Each needs the
// connection only for the job, so it is closed when the job returns.
package jsclient

import (
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Do connects to url with opts, runs fn with a JetStream context and closes
// the connection.
func Do(url string, fn func(jetstream.JetStream) error, opts ...nats.Option) error {
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	// jetstream.New fails only on a bad JetStreamOpt, and none is passed.
	js, _ := jetstream.New(nc)
	return fn(js)
}
