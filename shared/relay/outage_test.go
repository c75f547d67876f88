//go:build outage

// The broker-outage tests stop RabbitMQ's application, which would break
// every other test using the broker at the same time, so they build only
// with -tags outage and `make test` runs them alone after the main suite.
package relay_test

import (
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/relay"
)

// RabbitMQ is restarted mid-stream (stop_app / start_app): the relay
// recovers by itself and every message is delivered.
func TestOutageBrokerRestartMidStream(t *testing.T) {
	e := newEnv(t)
	s := newSink(t)
	s.answer.Store(func(string) int { time.Sleep(2 * time.Millisecond); return 200 })
	const n = 3000
	e.publish(n/2, time.Now(), "a")
	e.publish(n/2, time.Now().Add(3*time.Second), "b") // waiting in a tier during the outage
	r, _ := e.run(relay.Options{Concurrency: 8}, s.srv.URL)
	waitFor(t, 20*time.Second, "some deliveries", func() bool { return s.distinct() > 100 })

	start := testenv.StopBroker(t)
	outage := time.Now()
	time.Sleep(5 * time.Second)
	start()
	testenv.RabbitCtl(t, "await_startup")
	waitFor(t, 60*time.Second, "all delivered after the outage", func() bool { return s.distinct() == n })
	t.Logf("recovered %v after the outage began; %d reconnects, %d duplicate deliveries",
		time.Since(outage).Round(time.Millisecond), r.Metrics.Reconnects.Load(), s.total.Load()-n)
	if r.Metrics.Reconnects.Load() == 0 {
		t.Fatal("the relay never reconnected")
	}
}

// BenchmarkOutageRecovery: a relay draining a pre-loaded queue while the
// broker is down for 15 s; reports how long after the broker came back all
// messages were delivered, and the duplicates the outage caused.
func BenchmarkOutageRecovery(b *testing.B) {
	for range b.N {
		const n = 20_000
		e := newBenchEnv(b)
		e.preload(n, func(int) time.Time { return time.Now() })
		s := startSink(b, func(int64) (int, time.Duration) { return 200, 2 * time.Millisecond }, false)
		p := e.startRelay(s.url, 16)
		waitCount(b, time.Minute, "some delivered", n/10, s.delivered.Load)
		start := testenv.StopBroker(b)
		time.Sleep(15 * time.Second)
		before := s.delivered.Load() // in-flight deliveries finished during the outage
		start()
		back := time.Now()
		waitCount(b, 3*time.Minute, "first delivery after the outage", before+1, s.delivered.Load)
		first := time.Since(back)
		waitCount(b, 3*time.Minute, "all delivered", n, s.delivered.Load)
		b.ReportMetric(first.Seconds(), "s-to-first-delivery")
		b.ReportMetric(time.Since(back).Seconds(), "s-to-drain")
		b.ReportMetric(float64(s.requests.Load()-n), "duplicates")
		p.stop()
		e.close()
	}
}
