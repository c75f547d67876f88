// Package runenv reads .run/env, which `make run` writes while it runs, so
// the demo and load commands find the running system, and talks to it.
package runenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/orderevents"
)

// Env is the running system.
type Env struct {
	EmulatorHost   string
	Project        string
	UserSecret     string
	InternalSecret string
	URL            map[string]string // by entry point, e.g. URL["CreateOrder"]
	// Metrics are the processes' /metrics URLs, by entry point and "relay".
	Metrics      map[string]string
	ClusterNodes []string // with RABBITMQ_CLUSTER: each node's name=pidfile
	// The order events: the Pub/Sub emulator, the topic's project, the
	// topic and the run's shared subscription.
	PubSubHost, PubSubProject, EventsTopic, EventsSubscription string
	client                                                     *http.Client
}

// ListenEvents subscribes to the run's order events with a subscription of
// its own (name), created now, and calls f for each event until ctx ends.
// It sets PUBSUB_EMULATOR_HOST for this process. The returned channel
// closes when listening stopped.
func (e *Env) ListenEvents(ctx context.Context, name string, f func(orderevents.Received)) (<-chan error, error) {
	if e.PubSubHost == "" {
		return nil, fmt.Errorf("the running make run has no Pub/Sub emulator (restart make run)")
	}
	os.Setenv("PUBSUB_EMULATOR_HOST", e.PubSubHost)
	if err := orderevents.EnsureTopic(ctx, e.PubSubProject, e.EventsTopic, name); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- orderevents.Listen(ctx, e.PubSubProject, name, f) }()
	return done, nil
}

// Relay is the relay's key in Env.Metrics.
const Relay = "relay"

// Load reads path (default .run/env).
func Load(path string) (*Env, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (is `make run` running?)", path, err)
	}
	defer f.Close()
	e := &Env{URL: map[string]string{}, Metrics: map[string]string{}, client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch {
		case k == "FIRESTORE_EMULATOR_HOST":
			e.EmulatorHost = v
		case k == "FIRESTORE_PROJECT_ID":
			e.Project = v
		case k == "AUTH_HS256_SECRET":
			e.UserSecret = v
		case k == "INTERNAL_SHARED_SECRET":
			e.InternalSecret = v
		case k == "PUBSUB_EMULATOR_HOST":
			e.PubSubHost = v
		case k == "PUBSUB_PROJECT_ID":
			e.PubSubProject = v
		case k == "EVENTS_TOPIC":
			e.EventsTopic = v
		case k == "EVENTS_SUBSCRIPTION":
			e.EventsSubscription = v
		case k == "RABBITMQ_CLUSTER_NODES" && v != "":
			e.ClusterNodes = strings.Split(v, ",")
		case strings.HasPrefix(k, "URL_"), strings.HasPrefix(k, "METRICS_"):
			kind, key, _ := strings.Cut(k, "_")
			for _, name := range []string{"CreateOrder", "DeductStock", "ClearCart", "Pay", "HandleTimeout", "Sweep", Relay} {
				if strings.ToUpper(name) != key {
					continue
				}
				if kind == "URL" {
					e.URL[name] = v
				} else {
					e.Metrics[name] = v
				}
			}
		}
	}
	if e.Project == "" || e.URL["CreateOrder"] == "" {
		return nil, fmt.Errorf("%s is incomplete", path)
	}
	os.Setenv("FIRESTORE_EMULATOR_HOST", e.EmulatorHost)
	return e, nil
}

// Token mints a token for user.
func (e *Env) Token(user string) string {
	tok, _ := auth.SignHS256([]byte(e.UserSecret), user, time.Hour)
	return tok
}

// Call sends a JSON request as user ("" for none) and decodes the answer
// into out (when not nil). extra are header name, value pairs.
func (e *Env) Call(method, url, user string, body, out any, extra ...string) (int, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+e.Token(user))
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, err
		}
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	return resp.StatusCode, nil
}
