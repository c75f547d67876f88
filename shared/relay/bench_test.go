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

	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/events"
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
	// close deletes the topology: each env's 27 quorum queues are Raft
	// groups, and a few hundred left alive slow the broker to a halt.
	close func()
}

func newBenchEnv(b *testing.B) *benchEnv { return newBenchEnvMode(b, broker.ModeLadder) }

// newBenchEnvMode declares a topology in mode (broker.ModeLadder or
// broker.ModePlugin) and builds the relay.
func newBenchEnvMode(b *testing.B, mode string) *benchEnv {
	url := testenv.AMQPURL(b)
	e := &benchEnv{b: b, url: url, topo: broker.Topology{Prefix: testenv.UniqueName("ot-bench"), Mode: mode}}
	if err := testenv.OnAMQPChannel(url, e.topo.Declare); err != nil {
		b.Fatal(err)
	}
	e.close = sync.OnceFunc(func() {
		if err := testenv.OnAMQPChannel(url, e.topo.Delete); err != nil {
			b.Errorf("delete topology %s: %v", e.topo.Prefix, err)
		}
	})
	b.Cleanup(e.close)
	e.bin = filepath.Join(b.TempDir(), "relay")
	if out, err := exec.Command("go", "build", "-o", e.bin, "github.com/ordertimeout/ordertimeout/shared/cmd/relay").CombinedOutput(); err != nil {
		b.Fatalf("build relay: %v\n%s", err, out)
	}
	return e
}

// preload publishes n messages with due times from due(i), using
// asynchronous confirms (fast), waits until the broker confirmed all, and
// returns how long that took; then it lets the broker settle.
func (e *benchEnv) preload(n int, due func(i int) time.Time) time.Duration {
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
		ex, key, _, p := e.topo.Envelope(m, time.Now())
		if err := ch.PublishWithContext(context.Background(), ex, key, false, false, p); err != nil {
			e.b.Fatal(err)
		}
	}
	for range n {
		if cf := <-confirms; !cf.Ack {
			e.b.Fatal("preload nacked")
		}
	}
	took := time.Since(now)
	brokerSettle()
	return took
}

// brokerSettle waits (up to 15 s) until the broker has finished the work a
// preload leaves behind (quorum queues move their write-ahead log into
// segment files after the confirms), so that work is not counted against
// the relay's run: RabbitMQ below 10 % of a core over half a second.
func brokerSettle() {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c0 := brokerCPU()
		time.Sleep(500 * time.Millisecond)
		if brokerCPU()-c0 < 50*time.Millisecond {
			return
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
	ids       map[string]bool // every id requested: true once delivered
	// mark: when the delivered count reached mark (unix ns), set by the
	// handler itself so that it is exact; allTried: when the last of total
	// ids was first requested.
	mark, markedAt    atomic.Int64
	total, allTriedAt atomic.Int64
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
		id := r.Header.Get("ce-id")
		s.mu.Lock()
		done, tried := s.ids[id]
		if !tried {
			s.ids[id] = false
			if int64(len(s.ids)) == s.total.Load() {
				s.allTriedAt.Store(time.Now().UnixNano())
			}
		}
		if code/100 == 2 && !done {
			s.ids[id] = true
			if s.delivered.Add(1) == s.mark.Load() {
				s.markedAt.Store(time.Now().UnixNano())
			}
			if recordLateness {
				var d events.TimeoutData
				_ = json.Unmarshal(body, &d)
				if due, err := time.Parse(time.RFC3339Nano, d.Deadline); err == nil {
					s.lateness = append(s.lateness, time.Since(due))
				}
			}
		}
		s.mu.Unlock()
		w.WriteHeader(code)
	})}
	go func() { _ = s.srv.Serve(l) }()
	b.Cleanup(func() { _ = s.srv.Close() })
	return s
}

type relayProc struct {
	cmd  *exec.Cmd
	port int
}

// metric reads one counter from the relay's /metrics (-1 if unreadable).
func (p *relayProc) metric(name string) int64 {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.port))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64) // the exporter may write 1.2e+06
			return int64(f)
		}
	}
	return -1
}

func (e *benchEnv) startRelay(target string, concurrency int, extra ...string) *relayProc {
	port, _ := testenv.FreePort()
	cmd := exec.Command(e.bin)
	cmd.Env = append(os.Environ(), "AMQP_URL="+e.url, "BROKER_MODE="+e.topo.Mode, "BROKER_PREFIX="+e.topo.Prefix, "RELAY_TARGET_URL="+target,
		"INTERNAL_SHARED_SECRET=bench-secret-0123456789", "RELAY_CONCURRENCY="+strconv.Itoa(concurrency),
		fmt.Sprintf("PORT=%d", port), "LOG_LEVEL=error")
	cmd.Env = append(cmd.Env, extra...)
	if v := os.Getenv("RELAY_BENCH_ENV"); v != "" {
		// Extra settings for the relay under test, e.g. a profile.
		cmd.Env = append(cmd.Env, strings.Fields(v)...)
	}
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		e.b.Fatal(err)
	}
	p := &relayProc{cmd: cmd, port: port}
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
func (p *relayProc) cpu() time.Duration { return procCPU(p.cmd.Process.Pid) }

// brokerPID is the local RabbitMQ node's (beam.smp) pid, or 0 when it is
// not a local process: RELAY_BENCH_BROKER_PID, else the oldest beam.smp
// (the machine's own node).
func brokerPID() int {
	if pid, err := strconv.Atoi(os.Getenv("RELAY_BENCH_BROKER_PID")); err == nil && pid > 0 {
		return pid
	}
	out, err := exec.Command("pgrep", "-o", "beam.smp").Output()
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return pid
}

// brokerCPU returns the local RabbitMQ node's CPU time (0 if not local).
func brokerCPU() time.Duration {
	if pid := brokerPID(); pid != 0 {
		return procCPU(pid)
	}
	return 0
}

// machineCPU reads /proc/stat's first line: busy and iowait jiffies.
func machineCPU() (busy, iowait, total int64) {
	data, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		switch i {
		case 3: // idle
		case 4:
			iowait += n
		default:
			busy += n
		}
	}
	return
}

// procCPU returns a process's user+system CPU time from /proc.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data)[strings.LastIndexByte(string(data), ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ = 100
}

// rss returns the process's peak resident set (VmHWM) and current (VmRSS) in MB.
func (p *relayProc) rss() (peak, now float64) { return procRSS(p.cmd.Process.Pid) }

// procRSS returns a process's peak resident set (VmHWM) and current (VmRSS) in MB.
func procRSS(pid int) (peak, now float64) {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
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

// Sink answers of the throughput benchmarks.
var (
	answerInstant = func(int64) (int, time.Duration) { return 200, 0 }
	answer10ms    = func(int64) (int, time.Duration) { return 200, 10 * time.Millisecond }
	answer503     = func(n int64) (int, time.Duration) {
		if n%10 == 0 {
			return 503, 0
		}
		return 200, 0
	}
)

// drained is what one drain of a pre-loaded queue measured.
type drained struct {
	rate                        float64 // msgs/s
	rate99                      float64 // msgs/s until 99 % were delivered (without the last retries' backoff)
	rateTried                   float64 // msgs/s until every message was tried once: the backlog, retries interleaved
	relayUS, brokerUS, sinkUS   float64 // CPU µs per message
	busyPct, iowaitPct, peakRSS float64
	extra                       int64 // requests beyond one per message (retries)
	ackFrames, retryCopies      int64
}

// drain pre-loads a durable queue with benchN() due messages and measures
// the relay delivering all of them to a sink answering with answer.
// Retries back off from 50 ms (up to 200 ms), so the last retries do not
// stretch a run of a few seconds: the rate measures the relay's work, not
// its backoff waits.
func drain(b *testing.B, answer func(int64) (int, time.Duration), concurrency int) drained {
	e := loaded(b)
	defer e.close()
	return e.drain(answer, concurrency)
}

// loaded is a topology whose due queue holds benchN() due messages.
func loaded(b *testing.B) *benchEnv {
	e := newBenchEnv(b)
	e.preload(benchN(), func(int) time.Time { return time.Now() })
	return e
}

// drain measures a relay delivering the pre-loaded queue to a sink
// answering with answer.
func (e *benchEnv) drain(answer func(int64) (int, time.Duration), concurrency int, env ...string) drained {
	b, n := e.b, benchN()
	s := startSink(b, answer, false)
	s.mark.Store(int64(n) * 99 / 100)
	s.total.Store(int64(n))
	start, broker0, self0 := time.Now(), brokerCPU(), procCPU(os.Getpid())
	busy0, wait0, total0 := machineCPU()
	p := e.startRelay(s.url, concurrency, append([]string{"RELAY_BACKOFF_BASE=50ms", "RELAY_BACKOFF_MAX=200ms"}, env...)...)
	waitCount(b, 10*time.Minute, "delivered", int64(n), s.delivered.Load)
	elapsed := time.Since(start)
	cpu, brokerUsed, sinkUsed := p.cpu(), brokerCPU()-broker0, procCPU(os.Getpid())-self0
	busy1, wait1, total1 := machineCPU()
	peak, _ := p.rss()
	frames, copies := p.metric("relay_ack_frames_total"), p.metric("relay_retry_copies_total")
	p.stop()
	_ = s.srv.Close()
	perMsg := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	since := func(ns int64) float64 { return time.Unix(0, ns).Sub(start).Seconds() }
	return drained{
		rate: float64(n) / elapsed.Seconds(), rate99: float64(n*99/100) / since(s.markedAt.Load()), rateTried: float64(n) / since(s.allTriedAt.Load()),
		relayUS: perMsg(cpu), brokerUS: perMsg(brokerUsed), sinkUS: perMsg(sinkUsed),
		busyPct: 100 * float64(busy1-busy0) / float64(total1-total0), iowaitPct: 100 * float64(wait1-wait0) / float64(total1-total0),
		peakRSS: peak, extra: s.requests.Load() - int64(n), ackFrames: frames, retryCopies: copies,
	}
}

func (d drained) report(b *testing.B) {
	b.ReportMetric(d.rate, "msgs/s")
	b.ReportMetric(d.rate99, "msgs/s-to-99%")
	b.ReportMetric(d.rateTried, "msgs/s-all-tried")
	b.ReportMetric(d.relayUS, "relay-cpu-µs/msg")
	b.ReportMetric(d.brokerUS, "broker-cpu-µs/msg")
	b.ReportMetric(d.sinkUS, "sink-cpu-µs/msg")
	b.ReportMetric(d.busyPct, "machine-busy-%")
	b.ReportMetric(d.iowaitPct, "machine-iowait-%")
	b.ReportMetric(d.peakRSS, "relay-peak-RSS-MB")
	b.ReportMetric(float64(d.extra), "extra-requests")
	b.ReportMetric(float64(d.retryCopies), "retry-copies")
	b.ReportMetric(float64(benchN())/float64(d.ackFrames), "msgs-per-ack-frame")
}

// BenchmarkRelayThroughput drains a pre-loaded durable queue of 50,000 due
// messages (RELAY_BENCH_MESSAGES overrides) into a sink. The relay, the
// broker and the sink share the machine's two cores, so each one's CPU per
// message is reported, and the machine's load beside them.
func BenchmarkRelayThroughput(b *testing.B) {
	cases := []struct {
		name        string
		concurrency int
		answer      func(n int64) (int, time.Duration)
	}{
		{"instant-sink", 64, answerInstant},
		{"10ms-sink", 128, answer10ms},
		{"503-every-10th", 64, answer503},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				drain(b, c.answer, c.concurrency).report(b)
			}
		})
	}
}

// BenchmarkRelayFailureRatio compares the rate with a sink that answers 503
// to every 10th request against the clean rate, in pairs: both queues are
// pre-loaded first, then drained one right after the other (order
// alternating), since this machine's speed drifts by ±20 % from one run
// to the next. Run several pairs: -benchtime 6x.
//
// Besides the whole drain, it compares the rates until 99 % were
// delivered, and until every message was tried once (the backlog, with the
// retries that came due meanwhile): the last retries wait out their backoff
// (25 ms and more) at the end of a run of under 2 s, which is latency, not
// throughput. RELAY_BENCH_ENV="RELAY_BACKOFF_BASE=1s RELAY_BACKOFF_MAX=5m"
// runs it with the relay's default backoff.
func BenchmarkRelayFailureRatio(b *testing.B) {
	var ratios, ratios99, ratiosTried []float64
	for i := range b.N {
		first, second := loaded(b), loaded(b)
		brokerSettle()
		var clean, failing drained
		run := func(e *benchEnv, answer func(int64) (int, time.Duration)) drained {
			d := e.drain(answer, 64)
			brokerSettle()
			return d
		}
		if i%2 == 0 {
			clean, failing = run(first, answerInstant), run(second, answer503)
		} else {
			failing, clean = run(first, answer503), run(second, answerInstant)
		}
		first.close()
		second.close()
		ratios = append(ratios, 100*failing.rate/clean.rate)
		ratios99 = append(ratios99, 100*failing.rate99/clean.rate99)
		ratiosTried = append(ratiosTried, 100*failing.rateTried/clean.rateTried)
		b.Logf("pair %d: clean %.0f msgs/s, 10%% 503s %.0f msgs/s (%.0f %%); to 99 %%: %.0f vs %.0f msgs/s (%.0f %%); all tried: %.0f vs %.0f msgs/s (%.0f %%); CPU µs/msg clean vs 503s: relay %.1f vs %.1f, broker %.1f vs %.1f, sink %.1f vs %.1f; ack frames %d vs %d, retry copies %d",
			i+1, clean.rate, failing.rate, ratios[i], clean.rate99, failing.rate99, ratios99[i], clean.rateTried, failing.rateTried, ratiosTried[i],
			clean.relayUS, failing.relayUS, clean.brokerUS, failing.brokerUS, clean.sinkUS, failing.sinkUS, clean.ackFrames, failing.ackFrames, failing.retryCopies)
	}
	sort.Float64s(ratios)
	sort.Float64s(ratios99)
	sort.Float64s(ratiosTried)
	b.ReportMetric(median(ratios), "median-%-of-clean")
	b.ReportMetric(ratios[0], "min-%-of-clean")
	b.ReportMetric(ratios[len(ratios)-1], "max-%-of-clean")
	b.ReportMetric(median(ratios99), "median-%-of-clean-to-99%")
	b.ReportMetric(ratios99[0], "min-%-of-clean-to-99%")
	b.ReportMetric(median(ratiosTried), "median-%-of-clean-all-tried")
	b.ReportMetric(ratiosTried[0], "min-%-of-clean-all-tried")
}

// median of sorted values (of an even count, the mean of the middle two).
func median(sorted []float64) float64 {
	n := len(sorted)
	return (sorted[(n-1)/2] + sorted[n/2]) / 2
}

// BenchmarkTimerLateness: 10,000 timers due within the same second, routed
// through the delay ladder; lateness = arrival at the sink − due time.
// They are published 6 s ahead (RELAY_BENCH_AHEAD overrides, e.g. 30s for
// three tier hops each).
func BenchmarkTimerLateness(b *testing.B) {
	for range b.N {
		const n = 10_000
		e := newBenchEnv(b)
		s := startSink(b, func(int64) (int, time.Duration) { return 200, 0 }, true)
		p := e.startRelay(s.url, 64)
		ahead := 6 * time.Second
		if v, err := time.ParseDuration(os.Getenv("RELAY_BENCH_AHEAD")); err == nil && v > 0 {
			ahead = v
		}
		base := time.Now().Add(ahead)
		broker0, relay0 := brokerCPU(), p.cpu()
		e.preload(n, func(i int) time.Time { return base.Add(time.Duration(i) * time.Second / n) })
		waitCount(b, 2*time.Minute, "delivered", n, s.delivered.Load)
		b.ReportMetric(float64(p.metric("relay_hops_total"))/n, "hops/timer")
		b.ReportMetric(float64((brokerCPU()-broker0).Microseconds())/n, "broker-cpu-µs/timer")
		b.ReportMetric(float64((p.cpu()-relay0).Microseconds())/n, "relay-cpu-µs/timer")
		peak, _ := p.rss()
		b.ReportMetric(peak, "relay-peak-RSS-MB")
		reportLateness(b, s, "")
		p.stop()
		e.close()
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
		p.stop()
		e.close()
	}
}

// BenchmarkLadderVsPlugin runs the same timers in ladder mode, in plugin
// mode (the plugin sub-benchmark skips on a broker without
// rabbitmq_delayed_message_exchange) and in native mode (skips below
// RabbitMQ 4.4; AMQP_URL=<a 4.4 node> RELAY_BENCH_BROKER_PID=<its pid>
// measures ladder and native side by side): 100,000 timers (RELAY_BENCH_VS_PENDING
// overrides) published to come due over one minute, three minutes later
// (RELAY_BENCH_VS_AHEAD overrides); then, with those pending, 10,000 timers
// due within one second, published 6 s ahead; then the pending ones as they
// come due. It reports how fast the broker confirmed the pending timers,
// its CPU per timer (the settling work after the confirms included) and its
// memory growth, and the lateness of both groups. The plugin cannot cancel
// a timer, which is why the pending ones come due within minutes: deleting
// its exchange would leave them in the broker.
func BenchmarkLadderVsPlugin(b *testing.B) {
	pending := 100_000
	if v, err := strconv.Atoi(os.Getenv("RELAY_BENCH_VS_PENDING")); err == nil && v > 0 {
		pending = v
	}
	ahead := 3 * time.Minute
	if v, err := time.ParseDuration(os.Getenv("RELAY_BENCH_VS_AHEAD")); err == nil && v > 0 {
		ahead = v
	}
	const burst = 10_000
	for _, mode := range []string{broker.ModeLadder, broker.ModePlugin, broker.ModeNative} {
		b.Run(mode, func(b *testing.B) {
			switch mode {
			case broker.ModePlugin:
				skipWithoutPlugin(b, testenv.AMQPURL(b))
			case broker.ModeNative:
				skipBefore44(b, testenv.AMQPURL(b))
			}
			for range b.N {
				e := newBenchEnvMode(b, mode)
				s := startSink(b, answerInstant, true)
				p := e.startRelay(s.url, 64)
				_, rss0 := procRSS(brokerPID())
				cpu0 := brokerCPU()
				pendingDue := time.Now().Add(ahead)
				took := e.preload(pending, func(i int) time.Time { return pendingDue.Add(time.Duration(i%60_000) * time.Millisecond) })
				_, rss1 := procRSS(brokerPID())
				b.ReportMetric(float64(pending)/took.Seconds(), "pending-confirmed/s")
				b.ReportMetric(float64((brokerCPU()-cpu0).Microseconds())/float64(pending), "broker-cpu-µs/pending")
				b.ReportMetric(rss1-rss0, "broker-RSS-growth-MB")
				b.ReportMetric((rss1-rss0)*1e6/float64(pending), "broker-RSS-bytes/pending")

				base := time.Now().Add(6 * time.Second)
				e.preload(burst, func(i int) time.Time { return base.Add(time.Duration(i) * time.Second / burst) })
				waitCount(b, 2*time.Minute, "burst delivered", burst, s.delivered.Load)
				reportLateness(b, s, "burst-")
				waitCount(b, time.Until(pendingDue)+5*time.Minute, "pending delivered", int64(burst+pending), s.delivered.Load)
				reportLateness(b, s, "pending-")
				peak, _ := p.rss()
				b.ReportMetric(peak, "relay-peak-RSS-MB")
				p.stop()
				e.close()
			}
		})
	}
}

// reportLateness reports the min/p50/p99/max lateness the sink recorded
// since the last call, under names with prefix, and forgets them.
func reportLateness(b *testing.B, s *benchSink, prefix string) {
	s.mu.Lock()
	l := s.lateness
	s.lateness = nil
	s.mu.Unlock()
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(l[len(l)/2]), prefix+"p50-ms")
	b.ReportMetric(ms(l[len(l)*99/100]), prefix+"p99-ms")
	b.ReportMetric(ms(l[len(l)-1]), prefix+"max-ms")
	b.ReportMetric(ms(l[0]), prefix+"min-ms")
}

// skipBefore44 skips a native-mode benchmark on a broker older than 4.4.
func skipBefore44(b *testing.B, url string) {
	c, err := amqp.Dial(url)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if v, _ := c.Properties["version"].(string); !broker.AtLeast(v, 4, 4) {
		b.Skipf("native mode needs RabbitMQ 4.4+; the broker is %q", v)
	}
}
