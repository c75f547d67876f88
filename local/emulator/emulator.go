// Package emulator starts gcloud's Firestore and Pub/Sub emulators (Java
// servers) for the local run and the test harness, the one way both do it.
package emulator

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/ordertimeout/ordertimeout/local/proc"
)

// Emulator is a running emulator.
type Emulator struct {
	Host string // host:port
	*proc.Proc
}

// ErrNoGcloud means the Google Cloud SDK is not installed.
var ErrNoGcloud = errors.New("gcloud is not on PATH: install the Google Cloud SDK with the cloud-firestore-emulator component")

// Start starts an emulator in g, its output to out, and waits until it
// answers. Its port comes from 20000–31999, below Linux's ephemeral range,
// so no listener on port 0 elsewhere on the machine takes it between the
// check and the emulator's bind; should it be taken all the same (or the
// emulator's own WebSocket port collide), another port is tried, three in
// all.
func Start(g *proc.Group, out io.Writer) (*Emulator, error) {
	return start(g, out, "firestore-emulator", "Firestore", "emulators", "firestore")
}

// StartPubSub starts the Pub/Sub emulator in the same way (gcloud's
// pubsub-emulator component). Clients find it through PUBSUB_EMULATOR_HOST.
func StartPubSub(g *proc.Group, out io.Writer) (*Emulator, error) {
	return start(g, out, "pubsub-emulator", "Pub/Sub", "beta", "emulators", "pubsub")
}

func start(g *proc.Group, out io.Writer, name, what string, command ...string) (*Emulator, error) {
	if _, err := exec.LookPath("gcloud"); err != nil {
		return nil, ErrNoGcloud
	}
	var last error
	for range 3 {
		port, err := proc.FreePort()
		if err != nil {
			return nil, err
		}
		host := fmt.Sprintf("127.0.0.1:%d", port)
		args := append(append([]string{}, command...), "start", "--host-port="+host, "--quiet")
		p, err := g.Start(name, out, nil, "gcloud", args...)
		if err != nil {
			return nil, err
		}
		if last = Ready(host, 90*time.Second, p.Done()); last == nil {
			return &Emulator{Host: host, Proc: p}, nil
		}
		p.Stop(5 * time.Second)
	}
	return nil, fmt.Errorf("the %s emulator did not start: %w", what, last)
}

// Ready waits until the emulator at host answers "Ok", for at most within,
// or until exited is closed (the emulator died; nil: never).
func Ready(host string, within time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(within)
	last := errors.New("no answer")
	c := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		resp, err := c.Get("http://" + host + "/")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.TrimSpace(string(body)) == "Ok" {
				return nil
			}
			last = fmt.Errorf("status %d", resp.StatusCode)
		} else {
			last = err
		}
		select {
		case <-exited:
			return fmt.Errorf("the emulator on %s exited", host)
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("the emulator on %s did not answer within %v: %w", host, within, last)
}
