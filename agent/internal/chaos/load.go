package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// payload is what the harness publishes: the id is what the audit counts.
type payload struct {
	ID  string `json:"id"`
	Pad string `json:"pad"`
}

// publisher plays a local app that wants store-and-forward: it publishes to
// telemetry.chaos.<n> and alerts.chaos and writes an id to the ack log only
// after the local stream's PubAck. Every attempt uses a fresh id, so a
// publish that timed out (and may or may not be stored) is never confused
// with an acknowledged one.
type publisher struct {
	url, prefix string

	mu      sync.Mutex
	log     *bufio.Writer
	logFile *os.File
	sent    map[string]time.Time // id -> when the publish was sent
	ackAt   map[string]time.Time // id -> when its PubAck arrived
	ackSeq  map[string]streamSeq // id -> where its PubAck says it is stored
	acked   []string
	paused  bool
	fails   int
	onAck   func(sent time.Time)

	wg sync.WaitGroup
}

func newPublisher(url, prefix, ackLog string, onAck func(time.Time)) (*publisher, error) {
	f, err := os.Create(ackLog)
	if err != nil {
		return nil, fmt.Errorf("ack log: %w", err)
	}
	return &publisher{url: url, prefix: prefix, logFile: f, log: bufio.NewWriter(f), sent: map[string]time.Time{}, ackAt: map[string]time.Time{}, ackSeq: map[string]streamSeq{}, onAck: onAck}, nil
}

// run starts workers publishing with pace between publishes until ctx ends.
func (p *publisher) run(ctx context.Context, workers int, pace time.Duration) error {
	// No reconnect buffer: a publish while the agent is down must fail now,
	// not be replayed minutes later behind the harness's back.
	nc, err := nats.Connect(p.url, nats.Name("chaos-publisher"), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond), nats.ReconnectBufSize(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		return fmt.Errorf("publisher connect %s: %w", p.url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return err
	}
	pad := strings.Repeat("x", 96)
	for w := range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				if p.isPaused() {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				id := fmt.Sprintf("%s-%d-%d", p.prefix, w, n)
				subj := fmt.Sprintf("telemetry.chaos.%d", n)
				if n%10 == 0 {
					subj = "alerts.chaos"
				}
				data, _ := json.Marshal(payload{ID: id, Pad: pad})
				sent := time.Now()
				p.mu.Lock()
				p.sent[id] = sent
				p.mu.Unlock()
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				ack, err := js.Publish(pctx, subj, data)
				cancel()
				if err != nil || ack.Duplicate {
					p.mu.Lock()
					p.fails++
					p.mu.Unlock()
					time.Sleep(pace + 20*time.Millisecond)
					continue
				}
				p.mu.Lock()
				p.acked = append(p.acked, id)
				p.ackAt[id] = time.Now()
				p.ackSeq[id] = streamSeq{stream: ack.Stream, seq: ack.Sequence}
				fmt.Fprintln(p.log, id)
				p.mu.Unlock()
				if p.onAck != nil {
					p.onAck(sent)
				}
				time.Sleep(pace)
			}
		}()
	}
	go func() { p.wg.Wait(); nc.Close() }()
	return nil
}

func (p *publisher) isPaused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// pause stops new publishes; in-flight ones finish (wait for quiet with
// settle).
func (p *publisher) pause(on bool) {
	p.mu.Lock()
	p.paused = on
	p.mu.Unlock()
}

// sentAt is when id was published; zero for ids the harness did not send.
func (p *publisher) sentAt(id string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent[id]
}

// ackedAt is when id was acknowledged; zero if it was not.
func (p *publisher) ackedAt(id string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ackAt[id]
}

// storedAt is where the PubAck of id said it was stored.
func (p *publisher) storedAt(id string) streamSeq {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ackSeq[id]
}

// ackedIDs is a copy of every acknowledged id so far.
func (p *publisher) ackedIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.acked...)
}

func (p *publisher) failures() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fails
}

// close waits for the workers (their ctx must be done) and flushes the log.
func (p *publisher) close() error {
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.log.Flush(); err != nil {
		return err
	}
	return p.logFile.Close()
}

// waiter measures recovery: after arm(t), the first observed message that
// was sent after t closes the channel.
type waiter struct {
	mu    sync.Mutex
	after time.Time
	ch    chan struct{}
}

func (w *waiter) arm(t time.Time) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.after, w.ch = t, make(chan struct{})
	return w.ch
}

func (w *waiter) observe(sent time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch != nil && !sent.IsZero() && sent.After(w.after) {
		close(w.ch)
		w.ch = nil
	}
}
