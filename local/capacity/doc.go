package capacity

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"time"
)

// Cases are the document's two shops: orders a month and their peak.
var Cases = []struct {
	Name          string
	OrdersMonth   float64
	PeakPerSecond float64
}{
	{"1 million orders a month (peak 20/s)", 1e6, 20},
	{"100 million orders a month (peak 500/s)", 1e8, 500},
}

// Sections are the generated parts of docs/capacity.md, by name.
func Sections() map[string]string {
	out := map[string]string{}
	var b bytes.Buffer

	fmt.Fprintf(&b, "| price | USD | per | source | read on %s |\n|---|--:|---|---|:-:|\n", PricesRead)
	for _, p := range Prices {
		seen := "page table not rendered: check"
		if p.Seen {
			seen = "✓"
		}
		fmt.Fprintf(&b, "| %s | %g | %s | %s | %s |\n", p.Name, p.USD, p.Unit, p.Source, seen)
	}
	out["prices"], b = b.String(), bytes.Buffer{}

	fmt.Fprintf(&b, "| path | reads | writes | deletes | broker msgs | deliveries | requests | request ms | CPU-ms | log bytes | events |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, p := range append(Paths, DefaultMix.PerOrder()) {
		name := p.Name
		if name == "mix" {
			name = fmt.Sprintf("**the mix** (%.0f %% paid, %.0f %% cancelled, %.0f %% refused, the rest timed out)", DefaultMix.Paid*100, DefaultMix.Cancelled*100, DefaultMix.Refused*100)
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f | %.1f | %.0f | %.1f |\n", name, p.Reads, p.Writes, p.Deletes, p.Published, p.Deliveries, p.Requests, p.RequestMs, p.CPUms, p.LogBytes, p.Events)
	}
	out["paths"], b = b.String(), bytes.Buffer{}

	fmt.Fprintf(&b, "| timeout | tiers passed | relay re-publishes | broker messages per timer |\n|---|--:|--:|--:|\n")
	for _, d := range []time.Duration{10 * time.Second, time.Minute, 15 * time.Minute, time.Hour, 24 * time.Hour} {
		tiers, hops := TimerMessages(d)
		fmt.Fprintf(&b, "| %v | %d | %d | %d |\n", d, tiers, hops, 1+tiers+hops+1)
	}
	out["tiers"], b = b.String(), bytes.Buffer{}

	fmt.Fprintf(&b, "| part | ceiling (orders/s) | where the number comes from | the knob |\n|---|--:|---|---|\n")
	for _, c := range Ceilings(Default, DefaultMix) {
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s |\n", c.Part, c.OrdersPerSecond, c.Source, c.Knob)
	}
	out["ceilings"], b = b.String(), bytes.Buffer{}

	for i, c := range Cases {
		WriteBill(&b, c.Name, Bill(Default, DefaultMix, c.OrdersMonth))
		out[fmt.Sprintf("bill%d", i+1)], b = b.String(), bytes.Buffer{}
	}

	fmt.Fprintf(&b, "| orders a month | this system | with Cloud Tasks instead of broker, relay, connector | Temporal Cloud actions alone (%d per order) |\n|--:|--:|--:|--:|\n", TemporalActionsPerOrder)
	for _, n := range []float64{1e5, 1e6, 1e7, 1e8, 1e9} {
		ours, _ := Total(Bill(Default, DefaultMix, n))
		tasks, _ := Total(TasksBill(Default, DefaultMix, n))
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", count(n), Money(ours), Money(tasks), Money(n/1e6*TemporalUSDPerMillion()))
	}
	out["compare"] = b.String()
	return out
}

func count(n float64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.0f billion", n/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.0f million", n/1e6)
	default:
		return fmt.Sprintf("%.0f thousand", n/1e3)
	}
}

// Render returns doc with each generated section (between
// "<!-- generated: NAME -->" and "<!-- end -->") replaced by Sections'.
func Render(doc string) (string, error) {
	secs := Sections()
	var b strings.Builder
	rest := doc
	for {
		i := strings.Index(rest, "<!-- generated: ")
		if i < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		j := strings.Index(rest[i:], " -->")
		name := rest[i+len("<!-- generated: ") : i+j]
		sec, ok := secs[name]
		if !ok {
			return "", fmt.Errorf("docs: unknown generated section %q", name)
		}
		k := strings.Index(rest[i:], "<!-- end -->")
		if k < 0 {
			return "", fmt.Errorf("docs: section %q has no end", name)
		}
		b.WriteString(rest[:i+j+len(" -->")] + "\n" + sec + rest[i+k:i+k+len("<!-- end -->")])
		rest = rest[i+k+len("<!-- end -->"):]
	}
}

// RewriteDoc renders the file at path in place.
func RewriteDoc(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := Render(string(data))
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(out), 0o644)
}
