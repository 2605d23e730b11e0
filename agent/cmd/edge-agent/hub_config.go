package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/agent/fleetconfig"
)

// ensureConfigBucket is hub init's part for remote config: the bucket the
// sites watch (srv is the redacted hub URL, for the hint and errors). A
// hub whose account has no KV support fails here with the reason, after the
// fleet streams are in place.
func ensureConfigBucket(ctx context.Context, js jetstream.JetStream, replicas int, srv string, stdout io.Writer) error {
	_, lookErr := js.KeyValue(ctx, fleetconfig.Bucket)
	if lookErr != nil && !errors.Is(lookErr, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("hub %s: bucket %s: %w", srv, fleetconfig.Bucket, lookErr)
	}
	if _, err := fleetconfig.EnsureBucket(ctx, js, replicas); err != nil {
		return err
	}
	verb := "created"
	if lookErr == nil {
		verb = "verified existing (not changed)"
	}
	fmt.Fprintf(stdout, "%s hub bucket %s: desired config fragments (fleet, group.<name>, site.<site>); write them with: edge-agent fleet config set --server %s\n", verb, fleetconfig.Bucket, srv)
	return nil
}
