package cost

import (
	"strings"
	"testing"
)

const before = `# HELP firestore_reads_total Firestore documents read
# TYPE firestore_reads_total counter
firestore_reads_total{op="Order"} 3
firestore_reads_total{op="Reserve"} 4
firestore_writes_total{op="Reserve"} 2
process_cpu_time_seconds_total 1.5
`

const after = `firestore_reads_total{op="Order"} 5
firestore_reads_total{op="Reserve"} 8
firestore_writes_total{op="Reserve"} 6
firestore_attempts_total{op="Reserve"} 3
firestore_transactions_total{op="Reserve"} 2
broker_published_total{type="orders.timeout.due.v1"} 2
process_cpu_time_seconds_total 1.75
`

const relayText = `relay_delivered_total 2
relay_hops_total 1
process_cpu_time_seconds_total 0.5
`

func TestBetweenSumsProcessesAndKeepsTheRelayApart(t *testing.T) {
	parse := func(s string) Sample {
		p, err := Parse(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	b := map[string]Sample{"CreateOrder": parse(before), "relay": parse("process_cpu_time_seconds_total 0.25\n")}
	a := map[string]Sample{"CreateOrder": parse(after), "relay": parse(relayText)}
	w := Between(b, a, "relay").Per(2)
	want := Work{Reads: 3, Writes: 2, Transactions: 1, Retries: 0.5, Published: 1, Delivered: 1, Hops: 0.5, FunctionCPUms: 125, RelayCPUms: 125}
	if w != want {
		t.Fatalf("per order %+v, want %+v", w, want)
	}
	if got := w.BrokerMessages(); got != 1.5 {
		t.Errorf("broker messages %v, want 1.5 (published + hops)", got)
	}
	ops := OpsBetween(b, a)
	if ops["Reserve"] != [2]float64{4, 4} || ops["Order"] != [2]float64{2, 0} {
		t.Errorf("by operation %v", ops)
	}
}
