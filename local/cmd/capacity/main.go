// Command capacity answers, from the model docs/capacity.md explains
// (local/capacity), what a deployment costs a month and where it stops
// scaling at a peak:
//
//	go run ./local/cmd/capacity -orders-per-month 5000000 -peak-per-second 200
//	go run ./local/cmd/capacity -write-doc docs/capacity.md   # regenerate the document's tables
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/ordertimeout/ordertimeout/local/capacity"
)

func main() {
	d, m := capacity.Default, capacity.DefaultMix
	orders := flag.Float64("orders-per-month", 1e6, "orders a month")
	peak := flag.Float64("peak-per-second", 20, "the busiest second's orders")
	flag.Float64Var(&m.Paid, "paid", m.Paid, "share of orders paid")
	flag.Float64Var(&m.Cancelled, "cancelled", m.Cancelled, "share cancelled by the shopper")
	flag.Float64Var(&m.Refused, "refused", m.Refused, "share refused (out of stock or a limit); the rest time out")
	flag.DurationVar(&d.Timeout, "timeout", d.Timeout, "payment timeout (sets the ladder's tiers per timer)")
	flag.IntVar(&d.BrokerNodes, "broker-nodes", d.BrokerNodes, "rabbitmq_nodes (1 or 3)")
	flag.Float64Var(&d.BrokerVCPU, "broker-vcpu", d.BrokerVCPU, "sustained vCPU of a broker node (e2-small 0.5, e2-medium 1, e2-standard-2 2)")
	flag.IntVar(&d.RelayInstances, "relays", d.RelayInstances, "relay_instances")
	flag.IntVar(&d.MaxInstances, "max-instances", d.MaxInstances, "each function's max_instance_count")
	flag.IntVar(&d.Concurrency, "concurrency", d.Concurrency, "each function's max_instance_request_concurrency")
	flag.IntVar(&d.HotItemShards, "shards", d.HotItemShards, "shards of the busiest item")
	flag.BoolVar(&d.EventsOn, "events", d.EventsOn, "order events on Pub/Sub")
	flag.Float64Var(&d.RetentionDays, "retention-days", d.RetentionDays, "days a decided order is kept")
	writeDoc := flag.String("write-doc", "", "regenerate the tables of this document (docs/capacity.md) and exit")
	flag.Parse()
	if *writeDoc != "" {
		if err := capacity.RewriteDoc(*writeDoc); err != nil {
			fmt.Fprintln(os.Stderr, "capacity:", err)
			os.Exit(1)
		}
		return
	}
	if s := m.Paid + m.Cancelled + m.Refused; s > 1 || m.Paid < 0 || m.Cancelled < 0 || m.Refused < 0 || *orders < 0 || *peak < 0 ||
		(d.BrokerNodes != 1 && d.BrokerNodes != 3) || d.RelayInstances < 1 || d.MaxInstances < 1 || d.Concurrency < 1 || d.HotItemShards < 1 || d.BrokerVCPU <= 0 {
		fmt.Fprintln(os.Stderr, "capacity: shares must be ≥ 0 and sum to at most 1; counts ≥ 1; broker-nodes 1 or 3")
		os.Exit(2)
	}

	fmt.Printf("%s orders a month, peak %.0f/s, timeout %v; mix %.0f %% paid, %.0f %% cancelled, %.0f %% refused\n\n",
		fmt.Sprintf("%.0f", *orders), *peak, d.Timeout, m.Paid*100, m.Cancelled*100, m.Refused*100)
	fmt.Println("Parts at the peak (ceiling in orders/s; ≥ 70 % used is at risk):")
	for _, c := range capacity.Ceilings(d, m) {
		use := *peak / c.OrdersPerSecond
		mark := "  ok  "
		if use >= 0.7 {
			mark = "AT RISK"
		}
		fmt.Printf("  %-7s %-40s %8.0f  %5.0f %% used", mark, c.Part, c.OrdersPerSecond, use*100)
		if use >= 0.7 {
			fmt.Printf("   knob: %s", c.Knob)
		}
		fmt.Println()
	}
	knobs(d, m, *peak)

	fmt.Println()
	lines := capacity.Bill(d, m, *orders)
	for _, l := range lines {
		fixed := " "
		if l.Fixed {
			fixed = "*"
		}
		fmt.Printf("  %s %-48s %10s\n", fixed, l.Item, capacity.Money(l.USD))
	}
	total, floor := capacity.Total(lines)
	more, _ := capacity.Total(capacity.Bill(d, m, *orders+1e6))
	tasks, _ := capacity.Total(capacity.TasksBill(d, m, *orders))
	fmt.Printf("  %-50s %10s a month (fixed floor * %s; each further million orders %s)\n", "total", capacity.Money(total), capacity.Money(floor), capacity.Money(more-total))
	fmt.Printf("  %-50s %10s a month\n", "the same with Cloud Tasks for the timers", capacity.Money(tasks))
	fmt.Printf("  %-50s %10s a month (before any plan minimum)\n", "Temporal Cloud actions alone", capacity.Money(*orders/1e6*capacity.TemporalUSDPerMillion()))
	if tasks < total {
		fmt.Println("\nCloud Tasks would be cheaper at this volume: the broker, the relay and the VPC connector are a fixed floor.")
	}
	fmt.Printf("\nPrices: list, Tier 1 regions, read %s (docs/capacity.md cites each page).\n", capacity.PricesRead)
}

// knobs prints the settings that carry the peak with 30 % headroom.
func knobs(d capacity.Deployment, m capacity.Mix, peak float64) {
	need := peak / 0.7
	set := func(what string, have int, perUnit float64) {
		if n := int(math.Ceil(need / perUnit)); n > have {
			fmt.Printf("  set %s to at least %d\n", what, n)
		}
	}
	one := d
	one.RelayInstances, one.HotItemShards = 1, 1
	c := capacity.Ceilings(one, m)
	fmt.Println("\nKnobs for the peak (30 % headroom):")
	set("relay_instances", d.RelayInstances, c[4].OrdersPerSecond)
	set("the hot item's shards", d.HotItemShards, c[0].OrdersPerSecond)
	if need > c[2].OrdersPerSecond {
		fmt.Printf("  warm Firestore up: a cold database starts at 500 ops/s (%.0f orders/s); ramp +50 %% every 5 min for %v before the peak\n",
			c[2].OrdersPerSecond, time.Duration(math.Ceil(math.Log(need/c[2].OrdersPerSecond)/math.Log(1.5)))*5*time.Minute)
	}
	if need > c[5].OrdersPerSecond {
		fmt.Printf("  a broker machine type with at least %.1f sustained vCPU\n", d.BrokerVCPU*need/c[5].OrdersPerSecond)
	}
	if need > c[3].OrdersPerSecond {
		fmt.Printf("  max_instance_count at least %.0f\n", math.Ceil(float64(d.MaxInstances)*need/c[3].OrdersPerSecond))
	}
	if need > c[1].OrdersPerSecond {
		fmt.Println("  more sweep shards (store.SweepShards): the orders collection's index ranges are the limit")
	}
}
