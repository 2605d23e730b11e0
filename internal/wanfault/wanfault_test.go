package wanfault

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// echo is an upstream that writes back what it reads.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// roundTrip dials addr and echoes one line through it.
func roundTrip(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	_, err = io.ReadFull(c, buf)
	return err
}

// TestCutRefusesUnplugDrops checks the two outages a leaf tells apart: Cut
// refuses new dials at once (a host with nothing listening), Unplug leaves
// them unanswered until the dialer gives up (a dead WAN), and both close
// the connections that were open and heal with Restore on the same address.
func TestCutRefusesUnplugDrops(t *testing.T) {
	p, err := Start(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := roundTrip(p.Addr()); err != nil {
		t.Fatalf("through the proxy before any fault: %v", err)
	}

	for _, c := range []struct {
		name string
		down func() error
		want func(t *testing.T, err error, took time.Duration)
	}{
		{"cut", func() error { p.Cut(); return nil }, func(t *testing.T, err error, took time.Duration) {
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("dial while cut: %v, want connection refused", err)
			}
		}},
		{"unplug", p.Unplug, func(t *testing.T, err error, took time.Duration) {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("dial while unplugged: %v after %s, want a timeout", err, took)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			open, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer open.Close()
			if err := c.down(); err != nil {
				t.Fatal(err)
			}
			// The open connection is gone: a read ends instead of waiting.
			_ = open.SetReadDeadline(time.Now().Add(5 * time.Second))
			var ne net.Error
			if _, err := open.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection open before the fault still open: read %v", err)
			}
			for range 3 { // more than the one connection Unplug queues itself
				start := time.Now()
				_, err := net.DialTimeout("tcp", p.Addr(), 300*time.Millisecond)
				c.want(t, err, time.Since(start))
			}
			if err := p.Restore(); err != nil {
				t.Fatal(err)
			}
			if err := roundTrip(p.Addr()); err != nil {
				t.Fatalf("through the proxy after Restore: %v", err)
			}
		})
	}
}
