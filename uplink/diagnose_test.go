package uplink

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/wanfault"
)

// refused tells the restore watch whether a failed dial got an answer: a
// refusal or an unknown name means the path to the hub works; a timeout or
// an unreachable resolver means it may not. Real dials where a socket can
// give the error, and the resolver's error values as net returns them.
func TestRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	_, refusedErr := net.DialTimeout("tcp", closed, time.Second)

	p, err := wanfault.Start(closed)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Unplug(); err != nil {
		t.Fatal(err)
	}
	_, timeoutErr := net.DialTimeout("tcp", p.Addr(), 200*time.Millisecond)

	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refusedErr, true},
		{"no answer", timeoutErr, false},
		{"name not found", &net.DNSError{Err: "no such host", Name: "hub.invalid", IsNotFound: true}, true},
		{"resolver unreachable", &net.DNSError{Err: "i/o timeout", Name: "hub.example.com", IsTimeout: true}, false},
		{"cancelled", context.Canceled, false},
	} {
		if c.err == nil {
			t.Fatalf("%s: the dial succeeded", c.name)
		}
		if got := refused(c.err); got != c.want {
			t.Errorf("%s (%v): refused = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
