package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/events"
	"github.com/ordertimeout/ordertimeout/shared/testenv"
)

// Benchmarks of the relay as it runs in production: the relay binary in its
// own process (so its CPU and memory are its own), RabbitMQ and a
// keep-alive CloudEvents sink on the same 2-core machine. Each reports
// msgs/s and relay CPU µs per message; run them with `make bench`.

type benchEnv struct {
	b    *testing.B
	url  string
	topo broker.Topology
	bin  string
}

func newBenchEnv(b *testing.B) *benchEnv {
	url := testenv.AMQPURL(b)
	e := &benchEnv{b: b, url: url, topo: broker.Topology{Prefix: testenv.UniqueName("ot-bench"), Mode: broker.ModeLadder}}
	c, err := amqp.Dial(url)
	if err != nil {
		b.Fatal(err)
	}
	ch, _ := c.Channel()
	if err := e.topo.Declare(ch); err != nil {
		b.Fatal(err)
	}
	c.Close()
	b.Cleanup(func() {
		c, err := amqp.Dial(url)
		if err != nil {
			return
		}
		defer c.Close()
		if ch, err := c.Channel(); err == nil {
			_ = e.topo.Delete(ch)
		}
	})
	e.bin = filepath.Join(b.TempDir(), "relay")
	if out, err := exec.Command("go", "build", "-o", e.bin, "github.com/ordertimeout/ordertimeout/shared/cmd/relay").CombinedOutput(); err != nil {
		b.Fatalf("build relay: %v\n%s", err, out)
	}
	return e
}

// preload publishes n messages with due times from due(i), using
// asynchronous confirms (fast), and waits until the broker confirmed all.
func (e *benchEnv) preload(n int, due func(i int) time.Time) {
	c, err := amqp.Dial(e.url)
	if err != nil {
		e.b.Fatal(err)
	}
	defer c.Close()
	ch, _ := c.Channel()
	if err := ch.Confirm(false); err != nil {
		e.b.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n+1))
	now := time.Now()
	for i := range n {
		m := events.Timeout(fmt.Sprintf("b%07d", i), due(i), now, "")
		ex, key := e.topo.Route(m.DueAt.Sub(time.Now()))
		if err := ch.PublishWithContext(context.Background(), ex, key, false, false, m.Publishing(now)); err != nil {
			e.b.Fatal(err)
		}
	}
	for range n {
		if cf := <-confirms; !cf.Ack {
			e.b.Fatal("preload nacked")
		}
	}
}

// benchSink answers CloudEvents per the test's rule and records arrivals.
type benchSink struct {
	srv       *http.Server
	url       string
	delivered atomic.Int64
	requests  atomic.Int64
	mu        sync.Mutex
	lateness  []time.Duration
	ids       map[string]bool
}

func startSink(b *testing.B, answer func(n int64) (int, time.Duration), recordLateness bool) *benchSink {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &benchSink{url: "http://" + l.Addr().String(), ids: map[string]bool{}}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := s.requests.Add(1)
		code, wait := answer(n)
		if wait > 0 {
			time.Sleep(wait)
		}
		if code/100 == 2 {
			s.mu.Lock()
			if !s.ids[r.Header.Get("ce-id")] {
				s.ids[r.Header.Get("ce-id")] = true
				s.delivered.Add(1)
				if recordLateness {
					var d events.TimeoutData
					_ = json.Unmarshal(body, &d)
					if due, err := time.Parse(time.RFC3339Nano, d.Deadline); err == nil {
						s.lateness = append(s.lateness, time.Since(due))
					}
				}
			}
			s.mu.Unlock()
		}
		w.WriteHeader(code)
	})}
	go func() { _ = s.srv.Serve(l) }()
	b.Cleanup(func() { _ = s.srv.Close() })
	return s
}

type relayProc struct {
	cmd *exec.Cmd
}

func (e *benchEnv) startRelay(target string, concurrency int, extra ...string) *relayProc {
	port, _ := testenv.FreePort()
	cmd := exec.Command(e.bin)
	cmd.Env = append(os.Environ(), "AMQP_URL="+e.url, "BROKER_PREFIX="+e.topo.Prefix, "RELAY_TARGET_URL="+target,
		"INTERNAL_SHARED_SECRET=bench-secret-0123456789", "RELAY_CONCURRENCY="+strconv.Itoa(concurrency),
		fmt.Sprintf("PORT=%d", port), "LOG_LEVEL=error")
	cmd.Env = append(cmd.Env, extra...)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		e.b.Fatal(err)
	}
	p := &relayProc{cmd: cmd}
	e.b.Cleanup(p.stop)
	return p
}

func (p *relayProc) stop() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		_ = p.cmd.Wait()
	}
}

// cpu returns the process's user+system CPU time.
func (p *relayProc) cpu() time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data)[strings.LastIndexByte(string(data), ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ = 100
}

// rss returns the process's peak resident set (VmHWM) and current (VmRSS) in MB.
func (p *relayProc) rss() (peak, now float64) {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "VmHWM:" || f[0] == "VmRSS:") {
			kb, _ := strconv.ParseFloat(f[1], 64)
			if f[0] == "VmHWM:" {
				peak = kb / 1024
			} else {
				now = kb / 1024
			}
		}
	}
	return
}

func waitCount(b *testing.B, within time.Duration, what string, n int64, get func() int64) {
	deadline := time.Now().Add(within)
	for get() < n {
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d of %d after %v", what, get(), n, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func benchN() int {
	if v, err := strconv.Atoi(os.Getenv("RELAY_BENCH_MESSAGES")); err == nil && v > 0 {
		return v
	}
	return 50_000
}

// BenchmarkRelayThroughput drains a pre-loaded durable queue of 50,000 due
// messages (RELAY_BENCH_MESSAGES overrides) into a sink.
func BenchmarkRelayThroughput(b *testing.B) {
	cases := []struct {
		name        string
		concurrency int
		answer      func(n int64) (int, time.Duration)
	}{
		{"instant-sink", 64, func(int64) (int, time.Duration) { return 200, 0 }},
		{"10ms-sink", 128, func(int64) (int, time.Duration) { return 200, 10 * time.Millisecond }},
		{"503-every-10th", 64, func(n int64) (int, time.Duration) {
			if n%10 == 0 {
				return 503, 0
			}
			return 200, 0
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				n := benchN()
				e := newBenchEnv(b)
				e.preload(n, func(int) time.Time { return time.Now() })
				s := startSink(b, c.answer, false)
				start := time.Now()
				p := e.startRelay(s.url, c.concurrency, "RELAY_BACKOFF_BASE=50ms", "RELAY_BACKOFF_MAX=200ms")
				waitCount(b, 10*time.Minute, "delivered", int64(n), s.delivered.Load)
				elapsed := time.Since(start)
				cpu := p.cpu()
				peak, _ := p.rss()
				p.stop()
				b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
				b.ReportMetric(float64(cpu.Microseconds())/float64(n), "relay-cpu-µs/msg")
				b.ReportMetric(peak, "relay-peak-RSS-MB")
				b.ReportMetric(float64(s.requests.Load()-int64(n)), "extra-requests")
			}
		})
	}
}

// BenchmarkTimerLateness: 10,000 timers due within the same second, routed
// through the delay ladder; lateness = arrival at the sink − due time.
func BenchmarkTimerLateness(b *testing.B) {
	for range b.N {
		const n = 10_000
		e := newBenchEnv(b)
		s := startSink(b, func(int64) (int, time.Duration) { return 200, 0 }, true)
		e.startRelay(s.url, 64)
		base := time.Now().Add(6 * time.Second)
		e.preload(n, func(i int) time.Time { return base.Add(time.Duration(i) * time.Second / n) })
		waitCount(b, 2*time.Minute, "delivered", n, s.delivered.Load)
		s.mu.Lock()
		l := append([]time.Duration(nil), s.lateness...)
		s.mu.Unlock()
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		b.ReportMetric(float64(l[len(l)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(l[len(l)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(l[len(l)-1].Microseconds())/1000, "max-ms")
		b.ReportMetric(float64(l[0].Microseconds())/1000, "min-ms")
	}
}

// BenchmarkRelayRSSWithPendingTimers: the relay's memory while 1,000,000
// timers (RELAY_BENCH_PENDING overrides) wait in the broker's tiers.
func BenchmarkRelayRSSWithPendingTimers(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("RELAY_BENCH_PENDING")); err == nil && v > 0 {
		n = v
	}
	for range b.N {
		e := newBenchEnv(b)
		s := startSink(b, func(int64) (int, time.Duration) { return 200, 0 }, false)
		p := e.startRelay(s.url, 64)
		e.preload(n, func(i int) time.Time { return time.Now().Add(time.Hour + time.Duration(i%3600)*time.Second) })
		// A trickle of due messages keeps the relay working meanwhile.
		e.preload(1000, func(int) time.Time { return time.Now() })
		waitCount(b, time.Minute, "delivered", 1000, s.delivered.Load)
		time.Sleep(2 * time.Second)
		peak, now := p.rss()
		b.ReportMetric(peak, "relay-peak-RSS-MB")
		b.ReportMetric(now, "relay-RSS-MB")
		b.ReportMetric(float64(n), "pending")
	}
}
