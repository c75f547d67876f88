// Package capacity is the cost and capacity model of one deployment:
// what an order uses (measured by `make load`, held to the stack by
// TestCostModelMatchesTheStack), what each part can take before it stops
// scaling and the knob that moves it, and what a month costs at list
// prices. docs/capacity.md and `go run ./local/cmd/capacity` both print
// from here (TestCapacityDocMatchesTheModel holds the document to it).
package capacity

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/broker"
)

// PricesRead is when the prices below were read.
const PricesRead = "2026-12-06"

// Price is a list price in USD per unit, with the page it comes from.
type Price struct {
	Name   string
	USD    float64
	Unit   string
	Source string
	// Seen: the figure was read on a stored copy of Source on PricesRead;
	// otherwise the page's table did not render there and the figure is
	// the published list price as known, to check on the page.
	Seen bool
}

// List prices (Tier 1 regions such as europe-west1 and us-central1; other
// regions differ by a few per cent). Free tiers are left out: they lower
// the small case only.
var (
	FirestoreRead    = Price{"Firestore document reads", 0.03, "100,000", "https://cloud.google.com/firestore/pricing", false}
	FirestoreWrite   = Price{"Firestore document writes", 0.09, "100,000", "https://cloud.google.com/firestore/pricing", false}
	FirestoreDelete  = Price{"Firestore document deletes", 0.01, "100,000", "https://cloud.google.com/firestore/pricing", false}
	FirestoreStorage = Price{"Firestore stored data", 0.15, "GiB-month", "https://cloud.google.com/firestore/pricing", false}
	RunCPU           = Price{"Cloud Run (functions) CPU, request-based", 0.000024, "vCPU-second", "https://cloud.google.com/run/pricing", true}
	RunMemory        = Price{"Cloud Run (functions) memory, request-based", 0.0000025, "GiB-second", "https://cloud.google.com/run/pricing", true}
	RunRequests      = Price{"Cloud Run (functions) requests", 0.40, "million", "https://cloud.google.com/run/pricing", true}
	RunAlwaysCPU     = Price{"Cloud Run CPU, instance-based (the relay)", 0.000018, "vCPU-second", "https://cloud.google.com/run/pricing", true}
	RunAlwaysMemory  = Price{"Cloud Run memory, instance-based (the relay)", 0.000002, "GiB-second", "https://cloud.google.com/run/pricing", false}
	VMSmall          = Price{"Compute Engine e2-small (broker node)", 12.23, "month", "https://cloud.google.com/compute/vm-instance-pricing", false}
	VMMicro          = Price{"Compute Engine e2-micro (VPC connector instance)", 6.11, "month", "https://cloud.google.com/vpc/pricing#serverless-vpc-pricing", false}
	DiskBalanced     = Price{"Persistent Disk pd-balanced", 0.10, "GB-month", "https://cloud.google.com/compute/disks-image-pricing", false}
	NATGateway       = Price{"Cloud NAT, per VM", 0.0014, "hour", "https://cloud.google.com/nat/pricing", false}
	PubSubData       = Price{"Pub/Sub throughput (1 KB minimum per message)", 40, "TiB", "https://cloud.google.com/pubsub/pricing", false}
	LoggingIngest    = Price{"Cloud Logging ingestion (after 50 GiB a month)", 0.50, "GiB", "https://cloud.google.com/logging/pricing", false}
	MetricSamples    = Price{"Cloud Monitoring samples (OTLP/Prometheus)", 0.06, "million", "https://cloud.google.com/stackdriver/pricing", false}
	SchedulerJob     = Price{"Cloud Scheduler job (the sweep)", 0.10, "month", "https://cloud.google.com/scheduler/pricing", false}
	TasksOps         = Price{"Cloud Tasks operations (after 1 million a month)", 0.40, "million", "https://cloud.google.com/tasks/docs/pricing", true}
	TemporalActions  = Price{"Temporal Cloud actions", 25, "million", "https://docs.temporal.io/cloud/pricing", true}
)

// Prices lists every price, in the document's order.
var Prices = []Price{FirestoreRead, FirestoreWrite, FirestoreDelete, FirestoreStorage, RunCPU, RunMemory, RunRequests,
	RunAlwaysCPU, RunAlwaysMemory, VMSmall, VMMicro, DiskBalanced, NATGateway, PubSubData, LoggingIngest, MetricSamples,
	SchedulerJob, TasksOps, TemporalActions}

// Path is what one order down one path uses, per order, as `make load`
// measured it (its per-order table; timeout 10 s, so no tier hops: those
// come from TimerMessages).
type Path struct {
	Name                   string
	Reads, Writes, Deletes float64
	// Published: messages the functions published (a timer; a payment's
	// announcement); Deliveries: the relay's to HandleTimeout.
	Published, Deliveries float64
	// Requests to the functions, their time (ms) and CPU (ms), and the
	// bytes the functions logged.
	Requests, RequestMs, CPUms, LogBytes float64
	// Events: order events published (created and the decision).
	Events float64
}

// Paths are the measured paths (`make load ORDERS=300 RATE=50`, 20 orders
// per path, on the date and machine of docs/capacity.md).
var Paths = []Path{
	{Name: "created and paid", Reads: 12, Writes: 10, Deletes: 2, Published: 2, Deliveries: 2, Requests: 7, RequestMs: 160, CPUms: 10.6, LogBytes: 1579, Events: 2},
	{Name: "created and timed out", Reads: 13, Writes: 11, Deletes: 2, Published: 1, Deliveries: 1, Requests: 6, RequestMs: 167, CPUms: 11.9, LogBytes: 1013, Events: 2},
	{Name: "created and cancelled by the shopper", Reads: 14, Writes: 11, Deletes: 2, Published: 1, Deliveries: 1, Requests: 7, RequestMs: 175, CPUms: 13.0, LogBytes: 922, Events: 2},
	{Name: "refused (out of stock)", Reads: 5, Writes: 2, Deletes: 0, Published: 0, Deliveries: 0, Requests: 2, RequestMs: 19, CPUms: 2.3, LogBytes: 716, Events: 0},
}

// SweepReadsPerRun: what one sweep reads when it finds nothing (each of
// the sweep shards of overdue orders and stale reservations, an empty
// query billed one read, and the outbox), measured by `make load`.
const SweepReadsPerRun = 20

// SweepRunsPerMonth: Cloud Scheduler calls the sweep every minute.
const SweepRunsPerMonth = 60 * 24 * 30

// Mix is the share of orders down each path; the rest of 1 time out.
type Mix struct{ Paid, Cancelled, Refused float64 }

// DefaultMix: most orders paid, some abandoned, a few cancelled or refused.
var DefaultMix = Mix{Paid: 0.7, Cancelled: 0.05, Refused: 0.05}

func (m Mix) shares() [4]float64 {
	return [4]float64{m.Paid, 1 - m.Paid - m.Cancelled - m.Refused, m.Cancelled, m.Refused}
}

// PerOrder is the mix's average work per order.
func (m Mix) PerOrder() Path {
	var p Path
	for i, s := range m.shares() {
		q := Paths[i]
		p.Reads += s * q.Reads
		p.Writes += s * q.Writes
		p.Deletes += s * q.Deletes
		p.Published += s * q.Published
		p.Deliveries += s * q.Deliveries
		p.Requests += s * q.Requests
		p.RequestMs += s * q.RequestMs
		p.CPUms += s * q.CPUms
		p.LogBytes += s * q.LogBytes
		p.Events += s * q.Events
	}
	p.Name = "mix"
	return p
}

// TimerMessages is what the ladder's broker does for one timer of delay
// d: the tiers it passes (each a dead-lettering into the due queue) and
// the relay's re-publishes between them, from the topology's own routing.
func TimerMessages(d time.Duration) (tiers, hops int) {
	t := broker.Topology{Mode: broker.ModeLadder}
	for remaining := d; ; tiers++ {
		k, ok := t.Tier(remaining)
		if !ok {
			return tiers, max(tiers-1, 0)
		}
		remaining -= broker.TierTTL(k)
	}
}

// Deployment is what a shop runs: the terraform variables that cost money
// or move a ceiling.
type Deployment struct {
	BrokerNodes    int     // rabbitmq_nodes: 1 or 3
	BrokerVCPU     float64 // sustained vCPU of one node's machine type (e2-small: 0.5)
	RelayInstances int     // relay_instances
	MaxInstances   int     // each function's max_instance_count
	Concurrency    int     // each function's max_instance_request_concurrency
	HotItemShards  int     // shards of the busiest item
	Timeout        time.Duration
	EventsOn       bool
	RetentionDays  float64
}

// Default is terraform's defaults.
var Default = Deployment{BrokerNodes: 1, BrokerVCPU: 0.5, RelayInstances: 1, MaxInstances: 20, Concurrency: 40, HotItemShards: 1,
	Timeout: 15 * time.Minute, EventsOn: true, RetentionDays: 90}

// Measured figures the ceilings use (docs/benchmarks.md, this project's
// runs; the date and machine are there).
const (
	RelayMsgsPerSecond   = 9400   // relay, net/http, lowest of 9,400–12,500 msgs/s (one instance, 2 vCPU)
	BrokerCPUPerTimer    = 160e-6 // s, a timer published, dead-lettered once and delivered (156–186 µs at 6 s ahead)
	BrokerCPUPerHop      = 155e-6 // s, each further tier: (470 − 160) / 2 µs, the 2-hop run
	TierDeadLettersPerS  = 8000   // one tier dead-letters its expired messages one at a time
	StoredBytesPerOrder  = 3000   // order, pay order, reservation and their index entries (an estimate, not a measurement)
	ShardWritesPerSecond = 1      // Firestore's sustained writes to one document
	CollectionSeqWrites  = 500    // Firestore's writes/s to one sequential index range
	OrdersWritesPerOrder = 2      // writes to the orders collection per order (created, decided)
	DatabaseColdOps      = 500    // Firestore's starting ops/s on a cold database (500/50/5 rule)
	MonthSeconds         = 30 * 24 * 3600
)

// Ceiling is one part's limit in orders per second at the deployment.
type Ceiling struct {
	Part, Source, Knob string
	OrdersPerSecond    float64
}

// Ceilings returns every part's ceiling for d and mix m.
func Ceilings(d Deployment, m Mix) []Ceiling {
	p := m.PerOrder()
	tiers, hops := TimerMessages(d.Timeout)
	perTimerCPU := BrokerCPUPerTimer + float64(max(tiers-1, 0))*BrokerCPUPerHop
	// The relay delivers each timer and announcement once and re-publishes
	// each hop.
	relayMsgs := p.Deliveries + float64(hops)*(1-m.Refused)
	// A paid order's announcement costs the broker a publish and a delivery.
	brokerCPU := (1-m.Refused)*perTimerCPU + m.Paid*BrokerCPUPerTimer
	opsPerOrder := p.Reads + p.Writes + p.Deletes
	return []Ceiling{
		{"one item's stock (its shards)", "Firestore: about 1 sustained write/s per document; the store batches up to 64 reserves per shard commit, so bursts go far higher",
			"the item's `shards` (seed field): writes spread over its shards", float64(d.HotItemShards) * ShardWritesPerSecond * 64},
		{"the orders collection", "Firestore: 500 writes/s to one sequential index range; the sweep index is split in 8 (store.SweepShards)",
			"store.SweepShards (code); TTL and other single-field indexes are exempted in terraform", 8 * CollectionSeqWrites / OrdersWritesPerOrder},
		{"the database, cold", "Firestore's ramp-up rule: start at 500 ops/s, +50 % every 5 minutes",
			"warm the database up before a sale (ramp traffic over 5-minute steps)", DatabaseColdOps / opsPerOrder},
		{"one function (all its instances)", "Cloud Run: max_instance_count instances of 1 vCPU, each max_instance_request_concurrency requests in flight; counted as if one function took all of an order's request time and CPU (an upper bound on any one's share)",
			"max_instance_count, max_instance_request_concurrency (terraform/functions.tf)",
			math.Min(float64(d.MaxInstances*d.Concurrency)/(p.RequestMs/1000), float64(d.MaxInstances)*1000/p.CPUms)},
		{"the relay", fmt.Sprintf("this project: %d msgs/s per instance (docs/benchmarks.md); %.1f messages per order at a %v timeout", RelayMsgsPerSecond, relayMsgs, d.Timeout),
			"relay_instances", float64(d.RelayInstances) * RelayMsgsPerSecond / math.Max(relayMsgs, 0.1)},
		{"the broker", fmt.Sprintf("this project: %.0f µs of broker CPU per timer + %.0f µs per further tier (%d tiers at %v); every quorum replica does the work, so 3 nodes do not add capacity", BrokerCPUPerTimer*1e6, BrokerCPUPerHop*1e6, tiers, d.Timeout),
			"rabbitmq_machine_type (sustained vCPU)", d.BrokerVCPU / math.Max(brokerCPU, 1e-9)},
		{"one ladder tier, timers due together", fmt.Sprintf("a tier dead-letters about %d messages/s, one at a time", TierDeadLettersPerS),
			"none needed: deadlines spread over tiers; a sale's timers due in the same second share a tier", TierDeadLettersPerS},
	}
}

// Line is one item of a monthly bill.
type Line struct {
	Item  string
	Fixed bool // the floor: paid whatever the orders
	USD   float64
}

// Bill is a month's cost of orders orders at deployment d and mix m.
func Bill(d Deployment, m Mix, orders float64) []Line {
	p := m.PerOrder()
	rate := orders / MonthSeconds
	firestoreOps := orders * (p.Reads*FirestoreRead.USD + p.Writes*FirestoreWrite.USD + p.Deletes*FirestoreDelete.USD) / 1e5
	sweep := SweepRunsPerMonth * SweepReadsPerRun * FirestoreRead.USD / 1e5
	storage := orders * d.RetentionDays / 30 * StoredBytesPerOrder / (1 << 30) * FirestoreStorage.USD
	// A function instance is billed while a request is in flight; five
	// functions share the requests. With Poisson arrivals an instance is
	// busy 1 − e^(−L) of the time, L the requests in flight, and more
	// instances run once L passes the concurrency.
	busy := 0.0
	if rate > 0 {
		l := rate * p.RequestMs / 1000 / 5
		busy = 5 * math.Max(1-math.Exp(-l), l/float64(d.Concurrency))
	}
	billedSeconds := busy * MonthSeconds
	functions := billedSeconds * (RunCPU.USD + 0.25*RunMemory.USD)
	requests := orders * p.Requests * RunRequests.USD / 1e6
	relay := float64(d.RelayInstances) * MonthSeconds * (RunAlwaysCPU.USD + 0.5*RunAlwaysMemory.USD)
	broker := float64(d.BrokerNodes) * (VMSmall.USD*d.BrokerVCPU/0.5 + 20*DiskBalanced.USD)
	network := 2*VMMicro.USD + float64(d.BrokerNodes)*NATGateway.USD*730
	logBytes := orders * (p.LogBytes + p.Requests*600) // + Cloud Run's own request log entry, ~600 bytes each (estimate)
	logging := math.Max(0, logBytes/(1<<30)-50) * LoggingIngest.USD
	// Instances export ~200 series a minute: the relay, the broker-facing
	// functions at least one instance each while busy.
	monitoring := float64(d.RelayInstances+5) * 200 * 60 * 24 * 30 / 1e6 * MetricSamples.USD
	lines := []Line{
		{"Firestore reads, writes, deletes", false, firestoreOps},
		{"Firestore storage (retention " + fmt.Sprint(d.RetentionDays) + " days)", false, storage},
		{"Firestore: the sweep every minute", true, sweep},
		{"functions: instance time (1 vCPU, 256 MB)", false, functions},
		{"functions: requests", false, requests},
		{"relay, always on (1 vCPU, 512 MiB each)", true, relay},
		{fmt.Sprintf("broker: %d node(s) and 20 GB disks", d.BrokerNodes), true, broker},
		{"VPC connector (2 × e2-micro) and Cloud NAT", true, network},
		{"Cloud Logging (beyond 50 GiB)", false, logging},
		{"Cloud Monitoring samples", true, monitoring},
		{"Cloud Scheduler", true, SchedulerJob.USD},
	}
	if d.EventsOn {
		// Each event: publish and one delivery to a subscription, 1 KB minimum each.
		lines = append(lines, Line{"Pub/Sub order events", false, orders * p.Events * 2 * 1000 / (1 << 40) * PubSubData.USD})
	}
	return lines
}

// Total sums lines; floor is the fixed part.
func Total(lines []Line) (total, floor float64) {
	for _, l := range lines {
		total += l.USD
		if l.Fixed {
			floor += l.USD
		}
	}
	return total, floor
}

// TasksBill is the same month with Cloud Tasks in place of the broker,
// the relay, the VPC connector and NAT: a task per deadline (create, one
// push attempt) and one per payment announcement; the functions and
// Firestore as before.
func TasksBill(d Deployment, m Mix, orders float64) []Line {
	var out []Line
	for _, l := range Bill(d, m, orders) {
		if strings.HasPrefix(l.Item, "relay") || strings.HasPrefix(l.Item, "broker") || strings.HasPrefix(l.Item, "VPC") {
			continue
		}
		out = append(out, l)
	}
	ops := orders * ((1-m.Refused)*2 + m.Paid*2)
	out = append(out, Line{"Cloud Tasks operations (after 1 million free)", false, math.Max(0, ops-1e6) * TasksOps.USD / 1e6})
	return out
}

// TemporalActionsPerOrder: an order workflow's actions on Temporal Cloud
// (start, timer, payment signal or cancel, the activities reserve, clear
// cart and close or restore, their completions counted once): an estimate.
const TemporalActionsPerOrder = 7

// TemporalUSDPerMillion is Temporal Cloud's price of a million orders'
// actions, before any plan minimum.
func TemporalUSDPerMillion() float64 { return TemporalActionsPerOrder * TemporalActions.USD }

// Money formats USD.
func Money(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("$%.0f", v)
	case v >= 1:
		return fmt.Sprintf("$%.2f", v)
	default:
		return fmt.Sprintf("$%.3f", v)
	}
}

// WriteBill writes lines as a Markdown table with totals.
func WriteBill(w io.Writer, title string, lines []Line) {
	fmt.Fprintf(w, "| %s | fixed | USD a month |\n|---|:-:|--:|\n", title)
	for _, l := range lines {
		fixed := ""
		if l.Fixed {
			fixed = "✓"
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", l.Item, fixed, Money(l.USD))
	}
	total, floor := Total(lines)
	fmt.Fprintf(w, "| **total** (of which the fixed floor) | | **%s** (%s) |\n", Money(total), Money(floor))
}
