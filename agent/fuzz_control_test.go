package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// FuzzControlSocket writes arbitrary bytes, as one client connection, to the
// control socket of one running agent (what `edge-agent status` and scripts
// call): never a panic or a 5xx beyond the documented ones (501 and 505 are
// net/http's refusals of a transfer encoding or protocol version it does not
// speak, 503 is /v1/health of an agent that is down), the destructive
// POST /v1/buffer/ack-loss never answers another method, GET /v1/status and
// /v1/health answer JSON, and a well-formed GET /v1/status on a fresh
// connection still answers after each input. The seeds, in
// testdata/fuzz/FuzzControlSocket, are raw requests as scripts and the CLI
// send them, plus the shapes an HTTP/1.1 parser gets wrong: bad versions,
// smuggling headers, pipelining, truncated bodies, the destructive endpoint
// reached with the wrong method or a disguised path.
func FuzzControlSocket(f *testing.F) {
	a := startAgent(f, "sensors:\n  - {name: s, driver: sim, interval: 50ms}\n")
	sock := a.Config().ControlSocket
	probe := unixClient(sock)
	f.Fuzz(func(t *testing.T, data []byte) {
		reqs := parseRequests(data)
		resps := exchange(t, sock, data, reqs)
		acked, allowed := 0, 0
		for _, r := range reqs {
			if r.Method == http.MethodPost && r.URL.Path == "/v1/buffer/ack-loss" {
				allowed++
			}
		}
		for i, r := range resps {
			var req *http.Request
			if i < len(reqs) {
				req = reqs[i]
			}
			switch {
			case r.code == http.StatusNotImplemented, r.code == http.StatusHTTPVersionNotSupported:
			case r.code == http.StatusServiceUnavailable && req != nil && req.URL.Path == "/v1/health":
			case r.code >= 500:
				t.Fatalf("response %d: %d %s\ninput: %q", i, r.code, r.body, data)
			}
			if bytes.Contains(r.body, []byte(`"acknowledged"`)) {
				acked++
			}
			if req != nil && req.Method == http.MethodGet && r.code < 300 &&
				(req.URL.Path == "/v1/status" || req.URL.Path == "/v1/health") && !json.Valid(r.body) {
				t.Fatalf("%s %s: %d, body is not JSON:\n%s\ninput: %q", req.Method, req.URL, r.code, r.body, data)
			}
		}
		if acked > allowed {
			t.Fatalf("ack-loss answered %d times for %d POST requests to it\ninput: %q", acked, allowed, data)
		}
		resp, err := probe.Get("http://edge-agent/v1/status")
		if err != nil {
			t.Fatalf("control socket stopped answering after input %q: %v", data, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !json.Valid(body) {
			t.Fatalf("GET /v1/status after input %q: %d %s", data, resp.StatusCode, body)
		}
	})
}

// parseRequests reads the pipelined requests in data the way the server's
// parser does, stopping at the first it cannot parse.
func parseRequests(data []byte) []*http.Request {
	br := bufio.NewReader(bytes.NewReader(data))
	var reqs []*http.Request
	for {
		r, err := http.ReadRequest(br)
		if err != nil {
			return reqs
		}
		// The body must be consumed for the next request to parse.
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			reqs = append(reqs, r)
			return reqs
		}
		reqs = append(reqs, r)
	}
}

type rawResponse struct {
	code int
	body []byte
}

// exchange writes data on a new connection, closes the writing half so the
// server sees the end of the input at once, and reads every response until
// the server closes the connection.
func exchange(t *testing.T, sock string, data []byte, reqs []*http.Request) []rawResponse {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatalf("dial control socket: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(data); err != nil && !isClosedByPeer(err) {
		t.Fatalf("write: %v", err)
	}
	_ = c.(*net.UnixConn).CloseWrite()
	raw, err := io.ReadAll(c)
	if err != nil && !isClosedByPeer(err) {
		t.Fatalf("no end of the answer to %q: %v\nread so far: %q", data, err, raw)
	}
	br := bufio.NewReader(bytes.NewReader(raw))
	var out []rawResponse
	for i := 0; ; i++ {
		var req *http.Request
		if i < len(reqs) {
			req = reqs[i]
		}
		r, err := http.ReadResponse(br, req)
		if err != nil {
			return out
		}
		b, _ := io.ReadAll(r.Body)
		out = append(out, rawResponse{code: r.StatusCode, body: b})
	}
}

// isClosedByPeer: the server may close the connection before it has read
// all of a malformed input; that is an answer, not a failure.
func isClosedByPeer(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}
