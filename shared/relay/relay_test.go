package relay_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/events"
	"github.com/ordertimeout/ordertimeout/shared/logging"
	"github.com/ordertimeout/ordertimeout/shared/relay"
	"github.com/ordertimeout/ordertimeout/shared/telemetry"
)

// sink is a CloudEvents receiver that records ids and answers what the
// test says.
type sink struct {
	srv    *httptest.Server
	mu     sync.Mutex
	seen   map[string]int
	firstT map[string]time.Time
	answer atomic.Value // func(id string) int
	total  atomic.Int64
}

func newSink(t *testing.T) *sink {
	s := &sink{seen: map[string]int{}, firstT: map[string]time.Time{}}
	s.answer.Store(func(string) int { return 200 })
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get("ce-id")
		if r.Header.Get("ce-specversion") != "1.0" || id == "" || r.Header.Get("ce-type") == "" {
			w.WriteHeader(400)
			return
		}
		code := s.answer.Load().(func(string) int)(id)
		if code/100 == 2 {
			s.mu.Lock()
			if s.seen[id] == 0 {
				s.firstT[id] = time.Now()
			}
			s.seen[id]++
			s.mu.Unlock()
			s.total.Add(1)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

type env struct {
	t    *testing.T
	url  string
	topo broker.Topology
	pub  *broker.Publisher
}

// newEnv is a ladder topology of testTiers tiers on the test's broker.
func newEnv(t *testing.T) *env {
	topo := broker.Topology{Prefix: testenv.UniqueName("ot-relay"), Mode: broker.ModeLadder, Tiers: testTiers}
	return newEnvFor(t, testenv.AMQPURL(t), topo)
}

// newEnvFor is an env for topo on the broker at url, with a publisher; the
// topology is deleted when t ends.
func newEnvFor(t *testing.T, url string, topo broker.Topology) *env {
	e := &env{t: t, url: url, topo: topo}
	e.pub = broker.NewPublisher(url, e.topo)
	t.Cleanup(func() {
		_ = e.pub.Close()
		_ = testenv.OnAMQPChannel(url, e.topo.Delete)
	})
	return e
}

func (e *env) publish(n int, due time.Time, prefix string) {
	e.t.Helper()
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		m := events.Timeout(id, due, time.Now(), "")
		if err := e.pub.Publish(context.Background(), m); err != nil {
			e.t.Fatalf("publish %d: %v", i, err)
		}
	}
}

func (e *env) queueLen(q string) int {
	e.t.Helper()
	return e.queueLenOn(e.url, q)
}

// queueLenOn reads q's depth through the broker at url.
func (e *env) queueLenOn(url, q string) int {
	e.t.Helper()
	ch := testenv.AMQPChannel(e.t, url)
	defer ch.Close()
	info, err := ch.QueueDeclarePassive(q, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	if err != nil {
		e.t.Fatal(err)
	}
	return info.Messages
}

func (e *env) run(opt relay.Options, target string) (*relay.Relay, func()) {
	return e.runOn(e.url, opt, target)
}

// runOn runs a relay on the broker(s) of amqpURL.
func (e *env) runOn(amqpURL string, opt relay.Options, target string) (*relay.Relay, func()) {
	opt.AMQPURL, opt.Topology, opt.Target = amqpURL, e.topo, target
	if opt.Log == nil {
		opt.Log = logging.New(io.Discard, slog.LevelInfo)
	}
	r, err := relay.New(opt)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	stop := func() { cancel(); <-done }
	e.t.Cleanup(stop)
	return r, sync.OnceFunc(stop)
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestReceiverErrorsThenRecovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSink(t)
	var failing atomic.Bool
	failing.Store(true)
	s.answer.Store(func(string) int {
		if failing.Load() {
			return 500
		}
		return 200
	})
	e.publish(50, time.Now(), "m")
	r, _ := e.run(relay.Options{Concurrency: 8, BackoffBase: 100 * time.Millisecond, BackoffMax: 400 * time.Millisecond, MaxAttempts: 1000}, s.srv.URL)
	waitFor(t, 10*time.Second, "retries", func() bool { return r.Metrics.Retried.Load() >= 100 })
	failing.Store(false)
	waitFor(t, 15*time.Second, "all 50 delivered", func() bool { return s.distinct() == 50 })
	if r.Metrics.DeadLettered.Load() != 0 {
		t.Fatalf("%d dead-lettered", r.Metrics.DeadLettered.Load())
	}
}

func TestRefusedMessageIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSink(t)
	s.answer.Store(func(id string) int {
		if strings.HasPrefix(id, "timeout-bad-0-") {
			return 400
		}
		return 200
	})
	e.publish(1, time.Now(), "bad")
	e.publish(5, time.Now(), "good")
	r, _ := e.run(relay.Options{Concurrency: 4}, s.srv.URL)
	waitFor(t, 10*time.Second, "dead letter", func() bool { return r.Metrics.DeadLettered.Load() == 1 && s.distinct() == 5 })
	c, _ := amqp.Dial(e.url)
	defer c.Close()
	ch, _ := c.Channel()
	d, ok, err := ch.Get(e.topo.DeadQueue(), true)
	if err != nil || !ok {
		t.Fatalf("dead queue empty: %v", err)
	}
	if m, err := broker.FromDelivery(d); err != nil || m.Reason == "" || m.Subject != "bad-0" {
		t.Fatalf("dead letter: %+v, %v (headers %v)", m, err, d.Headers)
	}
}

// A target that refuses the caller (401, 403: a credential still
// propagating or rotated; 404, 405, 415: a wrong URL) is misconfigured, not
// sent a bad message: the relay retries with the backoff, counts each
// refusal by status, and dead-letters none of them. 400 and 422 still
// dead-letter at once.
func TestCredentialRefusalsAreRetriedNotDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSink(t)
	var mu sync.Mutex
	asked := map[string]int{}
	fixed := time.Now().Add(3 * time.Second)
	s.answer.Store(func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		asked[id]++
		switch {
		case strings.HasPrefix(id, "timeout-bad-"):
			return 422
		case time.Now().After(fixed):
			return 200
		}
		return []int{401, 403, 404, 405, 415}[asked[id]%5]
	})
	e.publish(5, time.Now(), "good")
	e.publish(1, time.Now(), "bad")
	r, _ := e.run(relay.Options{Concurrency: 4, BackoffBase: 200 * time.Millisecond, BackoffMax: 400 * time.Millisecond, MaxAttempts: 100}, s.srv.URL)
	waitFor(t, 20*time.Second, "all 5 delivered once the target was fixed", func() bool { return s.distinct() == 5 })
	if got := r.Metrics.DeadLettered.Load(); got != 1 {
		t.Fatalf("dead-lettered %d, want only the 422", got)
	}
	var refusals int64
	for _, status := range []int{401, 403, 404, 405, 415} {
		n := r.Metrics.Refusals(status)
		if n == 0 {
			t.Errorf("no refusal counted for %d", status)
		}
		refusals += n
	}
	if retried := r.Metrics.Retried.Load(); refusals < 5 || retried < refusals {
		t.Fatalf("refusals %d, retried %d", refusals, retried)
	}
	if text := scrape(t, r); !strings.Contains(text, `relay_target_refusals_total{status="401"}`) {
		t.Fatalf("/metrics lacks relay_target_refusals_total:\n%s", text)
	}
	// Retried with the backoff (200–400 ms), never the 25–50 ms pause: in
	// 3 s of refusals no timer was asked more than ~16 times.
	mu.Lock()
	defer mu.Unlock()
	for id, n := range asked {
		if n > 20 {
			t.Errorf("%s asked %d times in ~3 s: retried without the backoff", id, n)
		}
	}
}

// A target's 503 is retried, not dead-lettered, and every timer arrives.
func TestRelayRetriesA503(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSink(t)
	var failed sync.Map
	s.answer.Store(func(id string) int {
		if _, again := failed.LoadOrStore(id, true); !again && strings.HasPrefix(id, "timeout-m-1") {
			return 503
		}
		return 200
	})
	e.publish(50, time.Now(), "m")
	r, _ := e.run(relay.Options{Concurrency: 8}, s.srv.URL)
	waitFor(t, 15*time.Second, "all 50 delivered", func() bool { return s.distinct() == 50 })
	if r.Metrics.Retried.Load() == 0 || r.Metrics.DeadLettered.Load() != 0 {
		t.Fatalf("retried %d, dead-lettered %d", r.Metrics.Retried.Load(), r.Metrics.DeadLettered.Load())
	}
}

// The relay exports its queues' depths, so an alert can see messages
// waiting while nothing is delivered, or dead letters piling up.
func TestRelayExportsQueueDepths(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	raw := testenv.AMQPChannel(t, e.url)
	if err := e.topo.Declare(raw); err != nil {
		t.Fatal(err)
	}
	ch, err := broker.NewChannel(raw)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := broker.PublishDead(context.Background(), ch, e.topo, events.Timeout(fmt.Sprintf("d%d", i), time.Now(), time.Now(), ""), "test"); err != nil {
			t.Fatal(err)
		}
	}
	s := newSink(t)
	s.answer.Store(func(string) int { return 503 }) // nothing gets delivered: the due queue keeps them
	e.publish(4, time.Now().Add(time.Hour), "later")
	r, _ := e.run(relay.Options{Concurrency: 2}, s.srv.URL)
	waitFor(t, 3*relay.DepthInterval, "depths read", func() bool { return r.Metrics.Depth("dead") == 3 })
	if text := scrape(t, r); !strings.Contains(text, `relay_queue_depth{queue="dead"} 3`) || !strings.Contains(text, `relay_queue_depth{queue="due"}`) {
		t.Fatalf("/metrics lacks the depths:\n%s", text)
	}
}

// With AMQP_URL listing several brokers, a relay whose broker dies moves
// to the next one and goes on: every message delivered, none acked
// unsettled (what was in flight is delivered again, a duplicate at most).
func TestRelayFailsOverToTheNextBroker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u, _ := neturl.Parse(e.url)
	node := testenv.NewProxy(t, u.Host)
	list := fmt.Sprintf("amqp://%s@%s/,%s", u.User.String(), node.Addr(), e.url)
	s := newSink(t)
	var slow atomic.Bool
	slow.Store(true)
	s.answer.Store(func(string) int {
		if slow.Load() {
			time.Sleep(20 * time.Millisecond)
		}
		return 200
	})
	e.publish(300, time.Now(), "m")
	r, _ := e.runOn(list, relay.Options{Concurrency: 4}, s.srv.URL)
	waitFor(t, 10*time.Second, "the first deliveries", func() bool { return s.distinct() >= 20 })
	node.Kill()
	slow.Store(false)
	waitFor(t, 30*time.Second, "all 300 delivered", func() bool { return s.distinct() == 300 })
	if r.Metrics.Reconnects.Load() == 0 {
		t.Fatal("the relay never reconnected")
	}
	if n := e.queueLen(e.topo.DueQueue()); n != 0 {
		t.Fatalf("%d messages left in the due queue", n)
	}
}

// scrape reads r's metrics as the relay's /metrics serves them: its
// OpenTelemetry instruments through the Prometheus exporter.
func scrape(t *testing.T, r *relay.Relay) string {
	t.Helper()
	reader, h, err := telemetry.NewPrometheus()
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	if err := r.Metrics.RegisterOTel(mp.Meter("relay-test")); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

func TestRetriesAreBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSink(t)
	s.answer.Store(func(string) int { return 503 })
	e.publish(3, time.Now(), "m")
	r, _ := e.run(relay.Options{Concurrency: 4, BackoffBase: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond, MaxAttempts: 4}, s.srv.URL)
	waitFor(t, 15*time.Second, "3 dead letters", func() bool { return r.Metrics.DeadLettered.Load() == 3 })
	if got := r.Metrics.Retried.Load(); got != 9 {
		t.Fatalf("retried %d times, want 3 messages × 3 retries", got)
	}
}

// A failed delivery is retried once after a short pause, from memory (no
// copy through the broker); only a second failure waits out the backoff,
// and a 429 (slow down) waits it out at once.
func TestImmediateRetryThenBackoff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSink(t)
	var mu sync.Mutex
	asked := map[string][]time.Time{}
	s.answer.Store(func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		asked[id] = append(asked[id], time.Now())
		n := len(asked[id])
		switch {
		case n == 1 && strings.HasPrefix(id, "timeout-throttled-"):
			return 429
		case n == 1, n == 2 && strings.HasPrefix(id, "timeout-twice-"):
			return 503
		}
		return 200
	})
	e.publish(30, time.Now(), "once")
	e.publish(1, time.Now(), "twice")
	e.publish(1, time.Now(), "throttled")
	r, _ := e.run(relay.Options{Concurrency: 4, BackoffBase: 2 * time.Second, BackoffMax: 2 * time.Second}, s.srv.URL)
	waitFor(t, 10*time.Second, "all 32 delivered", func() bool { return s.distinct() == 32 })
	mu.Lock()
	defer mu.Unlock()
	for id, at := range asked {
		twice, throttled := strings.HasPrefix(id, "timeout-twice-"), strings.HasPrefix(id, "timeout-throttled-")
		want := 2
		if twice {
			want = 3
		}
		if len(at) != want {
			t.Fatalf("%s asked %d times, want %d", id, len(at), want)
		}
		pause := at[1].Sub(at[0])
		switch {
		case throttled && pause < time.Second:
			t.Errorf("%s: retry after %v, want the backoff (1–2 s) at once", id, pause)
		case !throttled && (pause < 25*time.Millisecond || pause > time.Second):
			t.Errorf("%s: first retry after %v, want the 25–50 ms pause", id, pause)
		}
		if twice && at[2].Sub(at[1]) < time.Second {
			t.Errorf("%s: second retry after %v, want the backoff (1–2 s)", id, at[2].Sub(at[1]))
		}
	}
	if got, copies := r.Metrics.Retried.Load(), r.Metrics.RetryCopies.Load(); got != 33 || copies != 2 {
		t.Fatalf("retried %d (copies %d), want 33 retries of which only the two backoffs copied", got, copies)
	}
}

// A retry waiting out its backoff sits in the retry queue, acked from the
// due queue only once its copy was confirmed; a relay that stops returns it
// there, and the next relay delivers it.
func TestRetryWaitsInRetryQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSink(t)
	s.answer.Store(func(string) int { return 503 })
	e.publish(20, time.Now(), "m")
	r, stop := e.run(relay.Options{Concurrency: 4, ImmediateRetries: -1, BackoffBase: 2 * time.Second, BackoffMax: 2 * time.Second}, s.srv.URL)
	sent := time.Now()
	waitFor(t, 10*time.Second, "20 retries", func() bool { return r.Metrics.Retried.Load() == 20 })
	stop()
	if due, retry := e.queueLen(e.topo.DueQueue()), e.queueLen(e.topo.RetryQueue()); due != 0 || retry != 20 {
		t.Fatalf("after stopping: %d in the due queue, %d in the retry queue; want 0 and 20", due, retry)
	}
	ch := testenv.AMQPChannel(t, e.url)
	d, ok, err := ch.Get(e.topo.RetryQueue(), false)
	if err != nil || !ok {
		t.Fatalf("get from the retry queue: %v", err)
	}
	m, err := broker.FromDelivery(d)
	if err != nil || m.Attempt != 1 || m.DueAt.Before(sent.Add(time.Second)) {
		t.Fatalf("retry copy: attempt %d, due %v after the first try (%v); want attempt 1, due 1–2 s after", m.Attempt, m.DueAt.Sub(sent), err)
	}
	_ = d.Nack(false, true)
	_ = ch.Close()

	s.answer.Store(func(string) int { return 200 })
	e.run(relay.Options{Concurrency: 4}, s.srv.URL)
	waitFor(t, 15*time.Second, "all 20 delivered", func() bool { return s.distinct() == 20 })
}

// More timers due within the hold than the prefetch window: the relay
// holds what fits, the rest wait in the due queue, and every one arrives,
// never early.
func TestHoldBeyondPrefetch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSink(t)
	due := time.Now().Add(1500 * time.Millisecond)
	e.publish(200, due, "m")
	e.run(relay.Options{Concurrency: 4, Prefetch: 50}, s.srv.URL)
	waitFor(t, 10*time.Second, "200 delivered", func() bool { return s.distinct() == 200 })
	s.mu.Lock()
	defer s.mu.Unlock()
	// Correctness only: none early, all delivered (above). How late is the
	// benchmarks' figure (BenchmarkTimerLateness), not a test's.
	var worst time.Duration
	for id, at := range s.firstT {
		late := at.Sub(due)
		if late < 0 {
			t.Fatalf("%s delivered %v before its due time", id, -late)
		}
		worst = max(worst, late)
	}
	t.Logf("latest of 200: %v after the due time", worst)
}

// A 1-hour timer published before a 2-second one does not hold it back.
func TestNoHeadOfLineBlocking(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSink(t)
	e.publish(1, time.Now().Add(time.Hour), "long")
	due := time.Now().Add(2 * time.Second)
	e.publish(1, due, "short")
	e.run(relay.Options{Concurrency: 4}, s.srv.URL)
	waitFor(t, 10*time.Second, "the 2 s timer", func() bool { return s.distinct() == 1 })
	s.mu.Lock()
	var at time.Time
	for _, v := range s.firstT {
		at = v
	}
	s.mu.Unlock()
	if late := at.Sub(due); late < 0 {
		t.Fatalf("2 s timer delivered %v before its due time", -late)
	}
}

// A tier queue deleted under a running relay: the relay's hop into it comes
// back unroutable, the message stays in the due queue (it is not counted as
// moved), the relay reconnects and declares the topology again, and the
// timer still fires on time.
func TestRelayRedeclaresLostTier(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSink(t)
	r, _ := e.run(relay.Options{Concurrency: 4}, s.srv.URL)
	waitFor(t, 10*time.Second, "the relay to connect", r.Metrics.Connected.Load)
	due := time.Now().Add(6 * time.Second)
	_, tier := e.topo.Route(5 * time.Second)
	ch := testenv.AMQPChannel(t, e.url)
	if _, err := ch.QueueDelete(tier, false, false, false); err != nil {
		t.Fatal(err)
	}
	// Straight into the due queue, so the relay itself must hop it to the
	// deleted tier.
	m := events.Timeout("lost-tier", due, time.Now(), "")
	if err := ch.Publish(e.topo.HopExchange(), "", false, false, m.Publishing()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the timer", func() bool { return s.distinct() == 1 })
	s.mu.Lock()
	at := s.firstT[m.ID]
	s.mu.Unlock()
	if late := at.Sub(due); late < 0 {
		t.Fatalf("timer delivered %v before its due time", -late)
	}
	if r.Metrics.Reconnects.Load() < 1 {
		t.Fatalf("the relay did not start a new session after the return")
	}
	if _, err := ch.QueueDeclarePassive(tier, true, false, false, false, nil); err != nil {
		t.Fatalf("tier %s not declared again: %v", tier, err)
	}
}

// The relay is a separate process killed with SIGKILL mid-stream; after a
// restart every message is delivered (duplicates allowed, counted).
func TestRelayKilledMidStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSink(t)
	var slow atomic.Bool
	slow.Store(true)
	s.answer.Store(func(string) int {
		if slow.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		return 200
	})
	const n = 2000
	e.publish(n, time.Now(), "k")
	bin := buildRelay(t)
	start := func() *exec.Cmd {
		cmd := exec.Command(bin)
		port, _ := testenv.FreePort()
		cmd.Env = append(os.Environ(), "AMQP_URL="+e.url, "BROKER_PREFIX="+e.topo.Prefix, "RELAY_TARGET_URL="+s.srv.URL,
			"INTERNAL_SHARED_SECRET=relay-test-secret-0123456789", "RELAY_CONCURRENCY=16", fmt.Sprintf("PORT=%d", port), "LOG_LEVEL=error")
		cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	cmd := start()
	waitFor(t, 20*time.Second, "some deliveries", func() bool { return s.distinct() >= n/4 })
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	before := s.distinct()
	if before == n {
		t.Fatalf("all %d delivered before the kill; the test proves nothing", n)
	}
	slow.Store(false)
	cmd = start()
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	waitFor(t, 30*time.Second, "all delivered after restart", func() bool { return s.distinct() == n })
	t.Logf("killed after %d distinct; %d deliveries in all, %d duplicates", before, s.total.Load(), s.total.Load()-n)
}

func buildRelay(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "relay")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/ordertimeout/ordertimeout/shared/cmd/relay").CombinedOutput()
	if err != nil {
		t.Fatalf("build relay: %v\n%s", err, out)
	}
	return bin
}

// Graceful stop: SIGTERM-style cancellation drains and acks nothing early.
func TestGracefulStopLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSink(t)
	s.answer.Store(func(string) int { time.Sleep(20 * time.Millisecond); return 200 })
	const n = 300
	e.publish(n, time.Now(), "g")
	r1, stop := e.run(relay.Options{Concurrency: 8}, s.srv.URL)
	waitFor(t, 10*time.Second, "some deliveries", func() bool { return s.distinct() > 20 })
	stop()
	if r1.Metrics.InFlight.Load() != 0 {
		t.Fatalf("%d in flight after stop", r1.Metrics.InFlight.Load())
	}
	// Every message is acked after its delivery or back in the queue. The
	// broker returns a closed channel's unacked messages asynchronously
	// (a quorum queue through its log), so the count may take a moment.
	delivered := int(r1.Metrics.Delivered.Load())
	waitFor(t, 5*time.Second, fmt.Sprintf("%d delivered + the queued to make %d after a graceful stop", delivered, n),
		func() bool { return e.queueLen(e.topo.DueQueue())+delivered == n })
	s.answer.Store(func(string) int { return 200 })
	e.run(relay.Options{Concurrency: 8}, s.srv.URL)
	waitFor(t, 10*time.Second, "all delivered", func() bool { return s.distinct() == n })
}

// testTiers keeps each test's ladder small (tiers up to 2 min): every tier
// is a quorum queue to create and delete.
const testTiers = 10

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
