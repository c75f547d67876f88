// Package cost turns the system's own metrics into what one order uses:
// Firestore reads, writes, deletes and transactions (the store's
// firestore.* counters), broker messages (the functions' broker.published
// and the relay's deliveries, hops and dead-letter moves), function
// requests and CPU. `make load` reads them from the processes of `make
// run`; BenchmarkOrderCost from an in-process stack. Both print Table.
package cost

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sample is one reading of a process's counters, by metric name (labels
// summed), and of its Firestore counters by store operation.
type Sample struct {
	Total map[string]float64
	ByOp  map[string]map[string]float64 // metric → op → value
}

// Parse reads Prometheus text: counters summed over their labels, and the
// firestore_* ones by op too.
func Parse(r io.Reader) (Sample, error) {
	s := Sample{Total: map[string]float64{}, ByOp: map[string]map[string]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		name, labels := line[:sp], ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name, labels = name[:i], name[i:]
		}
		s.Total[name] += v
		if strings.HasPrefix(name, "firestore_") {
			op := label(labels, "op")
			if s.ByOp[name] == nil {
				s.ByOp[name] = map[string]float64{}
			}
			s.ByOp[name][op] += v
		}
	}
	return s, sc.Err()
}

func label(labels, key string) string {
	i := strings.Index(labels, key+`="`)
	if i < 0 {
		return ""
	}
	rest := labels[i+len(key)+2:]
	if j := strings.IndexByte(rest, '"'); j >= 0 {
		return rest[:j]
	}
	return ""
}

// Scrape reads url (a /metrics endpoint).
func Scrape(c *http.Client, url string) (Sample, error) {
	resp, err := c.Get(url)
	if err != nil {
		return Sample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Sample{}, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return Parse(resp.Body)
}

// Metric names, as the Prometheus exporter writes the instruments.
const (
	mReads        = "firestore_reads_total"
	mWrites       = "firestore_writes_total"
	mDeletes      = "firestore_deletes_total"
	mTransactions = "firestore_transactions_total"
	mAttempts     = "firestore_attempts_total"
	mAborted      = "firestore_aborted_total"
	mPublished    = "broker_published_total"
	mCPU          = "process_cpu_time_seconds_total"
	mRequests     = "function_requests_total"
	mRequestTime  = "function_request_time_seconds_total"
	mDelivered    = "relay_delivered_total"
	mRetried      = "relay_retried_total"
	mHops         = "relay_hops_total"
	mDead         = "relay_dead_lettered_total"
)

// Work is what a number of orders used, in all, or per order once divided.
type Work struct {
	Reads, Writes, Deletes float64
	// Transactions and Retries (attempts after the first).
	Transactions, Retries float64
	// Published: messages the functions published (timers, announcements);
	// Delivered: deliveries the relay made to HandleTimeout; Hops and
	// DeadLettered: re-publishes to a later tier and dead-letter moves.
	Published, Delivered, Hops, DeadLettered, Retried float64
	// Requests to the functions, the time they took (what Cloud Run
	// bills, as instance time, while one is in flight), the functions' CPU
	// and the relay's, in ms.
	Requests, RequestMs, FunctionCPUms, RelayCPUms float64
	// LogBytes: what the functions logged (Cloud Logging bills by volume).
	LogBytes float64
}

// BrokerMessages is every message the broker took for the orders.
func (w Work) BrokerMessages() float64 { return w.Published + w.Hops + w.DeadLettered + w.Retried }

// fields lists w's counts, for the arithmetic below.
func (w *Work) fields() []*float64 {
	return []*float64{&w.Reads, &w.Writes, &w.Deletes, &w.Transactions, &w.Retries, &w.Published, &w.Delivered,
		&w.Hops, &w.DeadLettered, &w.Retried, &w.Requests, &w.RequestMs, &w.FunctionCPUms, &w.RelayCPUms, &w.LogBytes}
}

func (w Work) combine(v Work, f func(a, b float64) float64) Work {
	out, vs := w, v.fields()
	for i, p := range out.fields() {
		*p = f(*p, *vs[i])
	}
	return out
}

// Plus returns w + v.
func (w Work) Plus(v Work) Work { return w.combine(v, func(a, b float64) float64 { return a + b }) }

// Minus returns w − v.
func (w Work) Minus(v Work) Work { return w.combine(v, func(a, b float64) float64 { return a - b }) }

// Per divides w by n orders.
func (w Work) Per(n int) Work {
	d := float64(max(n, 1))
	return w.combine(Work{}, func(a, _ float64) float64 { return a / d })
}

// Between is the work from before to after: functions are the function
// processes' samples, relay the relay's, by the same keys.
func Between(before, after map[string]Sample, relay string) Work {
	var w Work
	for name, a := range after {
		b := before[name]
		d := func(m string) float64 { return a.Total[m] - b.Total[m] }
		if name == relay {
			w.Delivered += d(mDelivered)
			w.Hops += d(mHops)
			w.DeadLettered += d(mDead)
			w.Retried += d(mRetried)
			w.RelayCPUms += d(mCPU) * 1000
			continue
		}
		w.Reads += d(mReads)
		w.Writes += d(mWrites)
		w.Deletes += d(mDeletes)
		w.Transactions += d(mTransactions)
		w.Retries += d(mAttempts) - d(mTransactions)
		w.Published += d(mPublished)
		w.Requests += d(mRequests)
		w.RequestMs += d(mRequestTime) * 1000
		w.FunctionCPUms += d(mCPU) * 1000
	}
	return w
}

// OpsBetween is the Firestore reads and writes (deletes included) of each
// store operation from before to after, summed over the processes.
func OpsBetween(before, after map[string]Sample) map[string][2]float64 {
	out := map[string][2]float64{}
	for name, a := range after {
		b := before[name]
		for i, m := range []string{mReads, mWrites, mDeletes} {
			for op, v := range a.ByOp[m] {
				if d := v - b.ByOp[m][op]; d != 0 {
					r := out[op]
					r[min(i, 1)] += d
					out[op] = r
				}
			}
		}
	}
	return out
}

// Row is one order path's work per order.
type Row struct {
	Path   string
	Orders int
	Per    Work
}

// Table writes rows as a Markdown table (docs/capacity.md quotes it).
// perProcess adds the columns read from each process's own counters
// (requests, CPU), which a benchmark running every function in one
// process has not.
func Table(w io.Writer, rows []Row, perProcess bool) {
	head := "| path | orders | reads | writes | deletes | transactions | tx retries | broker msgs | deliveries |"
	rule := "|---|--:|--:|--:|--:|--:|--:|--:|--:|"
	if perProcess {
		head += " requests | request ms | function CPU-ms | relay CPU-ms | log bytes |"
		rule += "--:|--:|--:|--:|--:|"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, rule)
	for _, r := range rows {
		p := r.Per
		fmt.Fprintf(w, "| %s | %d | %.1f | %.1f | %.1f | %.1f | %.2f | %.1f | %.1f |", r.Path, r.Orders, p.Reads, p.Writes, p.Deletes,
			p.Transactions, p.Retries, p.BrokerMessages(), p.Delivered)
		if perProcess {
			fmt.Fprintf(w, " %.1f | %.0f | %.1f | %.2f | %.0f |", p.Requests, p.RequestMs, p.FunctionCPUms, p.RelayCPUms, p.LogBytes)
		}
		fmt.Fprintln(w)
	}
}

// Paths are the order paths measured, in Table's order.
var Paths = []string{"created and paid", "created and timed out", "created and cancelled by the shopper", "refused (out of stock)"}

// Settle waits until read returns the same work twice in a row, polled
// every interval, or until within passes; it returns the last reading.
func Settle(read func() (Work, error), interval, within time.Duration) (Work, error) {
	deadline := time.Now().Add(within)
	last, err := read()
	if err != nil {
		return last, err
	}
	for time.Now().Before(deadline) {
		time.Sleep(interval)
		cur, err := read()
		if err != nil {
			return cur, err
		}
		if stable(cur, last) {
			return cur, nil
		}
		last = cur
	}
	return last, nil
}

// stable compares the counts that settle (CPU keeps ticking).
func stable(a, b Work) bool {
	return a.Reads == b.Reads && a.Writes == b.Writes && a.Deletes == b.Deletes && a.Published == b.Published &&
		a.Delivered == b.Delivered && a.Hops == b.Hops && a.Requests == b.Requests
}
