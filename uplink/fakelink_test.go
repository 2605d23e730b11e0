package uplink

import (
	"sync"
	"sync/atomic"
)

// fakeLink is the link manager as the forwarder sees it: up or down as the
// test sets it, counting bounces and remembering the degraded reason.
type fakeLink struct {
	mu        sync.Mutex
	connected bool
	up        chan struct{} // closed while connected, as Link.Up
	bounces   atomic.Int32
	degraded  atomic.Value // [2]string{class, reason}
	wan       atomic.Bool  // WANRestored
}

func newFakeLink(connected bool) *fakeLink {
	l := &fakeLink{up: make(chan struct{})}
	l.set(connected)
	return l
}

func (l *fakeLink) set(connected bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case connected && !l.connected:
		close(l.up)
	case !connected && l.connected:
		l.up = make(chan struct{})
	}
	l.connected = connected
}

func (l *fakeLink) Connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.connected
}

func (l *fakeLink) Up() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up
}

func (l *fakeLink) Bounce() { l.bounces.Add(1) }
func (l *fakeLink) SetDegraded(class ReasonClass, reason string) {
	l.degraded.Store([2]string{string(class), reason})
}
func (l *fakeLink) WANRestored() bool   { return l.wan.Load() }
func (l *fakeLink) SentUpstream() int64 { return 0 } // no gate: nothing counted
