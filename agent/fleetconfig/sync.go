package fleetconfig

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LocalStream is the site's copy of its fragments, in its own JetStream
// domain: the last value of each key on edge-agent.config.<key>. Those
// subjects are in the agent's namespace, which uplink.Protect keeps from
// crossing the leaf in either direction, so the hub can neither write the
// copy nor read it, and applying reads only this stream.
const LocalStream = "EDGE_CONFIG_DESIRED"

const localPrefix = "edge-agent.config."

// Headers of a local copy message.
const (
	hdrRev     = "Edge-Config-Rev"
	hdrDeleted = "Edge-Config-Deleted"
)

// LocalStreamConfig keeps one message per key.
func LocalStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              LocalStream,
		Description:       "edge-agent: this site's copy of its desired config fragments from the hub",
		Subjects:          []string{localPrefix + ">"},
		Storage:           jetstream.FileStorage,
		MaxMsgsPerSubject: 1,
		MaxMsgSize:        1 << 20,
	}
}

// Local is the site's copy.
type Local struct {
	js jetstream.JetStream
	s  jetstream.Stream
}

// OpenLocal creates the local copy's stream if needed.
func OpenLocal(ctx context.Context, js jetstream.JetStream) (*Local, error) {
	s, err := js.CreateOrUpdateStream(ctx, LocalStreamConfig())
	if err != nil {
		return nil, fmt.Errorf("local stream %s: %w", LocalStream, err)
	}
	return &Local{js: js, s: s}, nil
}

// Read returns what the site holds for keys; a key never seen is absent.
func (l *Local) Read(ctx context.Context, keys []string) (map[string]Fragment, error) {
	out := map[string]Fragment{}
	for _, k := range keys {
		m, err := l.s.GetLastMsgForSubject(ctx, localPrefix+k)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s from %s: %w", k, LocalStream, err)
		}
		rev, _ := strconv.ParseUint(m.Header.Get(hdrRev), 10, 64)
		out[k] = Fragment{Key: k, Rev: rev, Data: string(m.Data), Deleted: m.Header.Get(hdrDeleted) != ""}
	}
	return out, nil
}

// Store records a fragment seen at the hub, unless the copy already holds
// that revision or a later one (a watch replays the current values on
// every reconnect).
func (l *Local) Store(ctx context.Context, f Fragment) (bool, error) {
	have, err := l.Read(ctx, []string{f.Key})
	if err != nil {
		return false, err
	}
	if h, ok := have[f.Key]; ok && h.Rev >= f.Rev {
		return false, nil
	}
	m := nats.NewMsg(localPrefix + f.Key)
	m.Data = []byte(f.Data)
	m.Header.Set(hdrRev, strconv.FormatUint(f.Rev, 10))
	if f.Deleted {
		m.Header.Set(hdrDeleted, "1")
	}
	if _, err := l.js.PublishMsg(ctx, m); err != nil {
		return false, fmt.Errorf("store %s in %s: %w", f, LocalStream, err)
	}
	return true, nil
}

// Syncer copies the site's keys from the hub bucket into the local copy
// while the link is up. It only reads at the hub: one ordered consumer per
// key, created by a request from the site and delivered to the agent's own
// inbox, so nothing new has to cross the leaf towards the site.
type Syncer struct {
	Hub   jetstream.JetStream // the hub's domain, over the agent's connection
	Local *Local
	Keys  []string
	// LinkConn is the current leaf connection id, 0 while down; a new id
	// restarts the watches.
	LinkConn func() uint64
	// Changed is signalled after the copy changed.
	Changed chan<- struct{}
	// Problem is told what stops the sync ("" once it works again).
	Problem func(string)
	Log     *slog.Logger
	// Poll is how often the link is checked; Recheck how often a working
	// watch checks that the bucket still exists (a deleted bucket just
	// goes quiet).
	Poll, Recheck time.Duration
}

// Run syncs until ctx ends; it never fails the agent: a hub without the
// bucket or without JetStream is reported through Problem and retried.
func (s *Syncer) Run(ctx context.Context) error {
	if s.Poll == 0 {
		s.Poll = time.Second
	}
	if s.Recheck == 0 {
		s.Recheck = 30 * time.Second
	}
	var conn uint64
	var stop func()
	var lastProblem string
	problem := func(p string) {
		if p != lastProblem {
			if p != "" {
				s.Log.Warn("remote config: cannot sync from the hub; keeping the local copy", "problem", p)
			}
			lastProblem = p
			s.Problem(p)
		}
	}
	var errc chan error
	// halt ends the current watches; errc goes with them, so a late error
	// of an ended session is never taken for the next one's.
	halt := func() {
		if stop != nil {
			stop()
		}
		stop, errc = nil, nil
	}
	defer halt()
	tick := time.NewTicker(s.Poll)
	defer tick.Stop()
	// retry is when a failed watch is tried again; recheck when a running
	// one next checks its bucket.
	var retry, recheck time.Time
	for {
		cur := s.LinkConn()
		if stop != nil && (cur != conn || cur == 0) {
			halt()
			retry = time.Time{}
		}
		if stop != nil && time.Now().After(recheck) {
			if _, err := s.open(ctx); err != nil {
				problem(err.Error())
				halt()
				retry = time.Now().Add(5 * s.Poll)
			}
			recheck = time.Now().Add(s.Recheck)
		}
		if stop == nil && cur != 0 && time.Now().After(retry) {
			var err error
			stop, errc, err = s.watch(ctx)
			if err != nil {
				problem(err.Error())
				retry = time.Now().Add(5 * s.Poll)
			} else {
				conn = cur
				problem("")
				recheck = time.Now().Add(s.Recheck)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			problem(err.Error())
			halt()
			retry = time.Now().Add(5 * s.Poll)
		case <-tick.C:
		}
	}
}

func (s *Syncer) open(ctx context.Context) (jetstream.KeyValue, error) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, err := s.Hub.KeyValue(lctx, Bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, fmt.Errorf("the hub has no %s bucket (run `edge-agent hub init` at the hub)", Bucket)
	case err != nil:
		return nil, fmt.Errorf("hub bucket %s: %w (check that the hub runs JetStream in the domain remote_config.hub_domain names, and that this site's leaf user may watch its keys: regenerate it with `edge-agent hub leaf-user`)", Bucket, err)
	}
	return kv, nil
}

func (s *Syncer) watch(ctx context.Context) (func(), chan error, error) {
	kv, err := s.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	// The applier hears of changes only once every key's current value has
	// arrived, so a (re)connect never applies half of a new set, e.g. the
	// site fragment without the group fragment it was written with.
	var initial atomic.Int32
	initial.Store(int32(len(s.Keys)))
	signal := func() {
		if initial.Load() > 0 {
			return
		}
		select {
		case s.Changed <- struct{}{}:
		default:
		}
	}
	for _, k := range s.Keys {
		w, err := kv.Watch(wctx, k)
		if err != nil {
			cancel()
			wg.Wait()
			return nil, nil, fmt.Errorf("watch %s in the hub bucket %s: %w", k, Bucket, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { _ = w.Stop() }()
			for {
				select {
				case <-wctx.Done():
					return
				case e, ok := <-w.Updates():
					if !ok {
						return
					}
					if e == nil {
						initial.Add(-1)
						signal()
						continue
					}
					f := Fragment{Key: e.Key(), Rev: e.Revision(), Data: string(e.Value()), Deleted: e.Operation() != jetstream.KeyValuePut}
					changed, err := s.Local.Store(wctx, f)
					if err != nil && wctx.Err() == nil {
						select {
						case errc <- err:
						default:
						}
						return
					}
					if changed {
						s.Log.Info("remote config: new fragment from the hub", "key", f.Key, "rev", f.Rev, "deleted", f.Deleted)
						signal()
					}
				}
			}
		}()
	}
	return func() { cancel(); wg.Wait() }, errc, nil
}
