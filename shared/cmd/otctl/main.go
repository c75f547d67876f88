// Command otctl is the operator's tool. Its "dead" commands look at and
// redrive what the relay dead-lettered:
//
//	go run ./shared/cmd/otctl dead list                       # newest first, with a count by reason
//	go run ./shared/cmd/otctl dead show ID                    # one whole message (message or order id)
//	go run ./shared/cmd/otctl dead redrive -all -dry-run      # what a redrive would do
//	go run ./shared/cmd/otctl dead redrive -reason 'target answered 503'
//	go run ./shared/cmd/otctl dead redrive -id o1,o2 -older-than 1h
//
// The broker is AMQP_URL (or -amqp-url), or the AMQP URL kept in Secret
// Manager (-amqp-secret projects/P/secrets/ot-amqp-url, read with
// Application Default Credentials); the topology prefix is BROKER_PREFIX
// (or -prefix, default "ot"). See README "Runbook: timers were
// dead-lettered".
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/api/secretmanager/v1"

	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/deadletter"
)

const usage = `usage: otctl dead list|show ID|redrive [flags]

  -amqp-url URL        broker (default $AMQP_URL)
  -amqp-secret NAME    read the URL from Secret Manager: projects/P/secrets/S[/versions/V]
  -prefix P            topology prefix (default $BROKER_PREFIX, else "ot")
  -limit N             read at most N dead letters (default 10000)
redrive selects with (all given must hold; at least one):
  -all | -id ID[,ID…] (message or order ids) | -reason TEXT (substring)
  -older-than T | -newer-than T   (T: a duration such as 2h, or an RFC 3339 time)
  -dry-run             say what would be redriven; change nothing
`

func main() {
	if err := run(os.Args[1:], os.Stdout, time.Now()); err != nil {
		fmt.Fprintln(os.Stderr, "otctl:", err)
		os.Exit(2)
	}
}

func run(args []string, out io.Writer, now time.Time) error {
	if len(args) < 2 || args[0] != "dead" {
		return errors.New(usage)
	}
	cmd := args[1]
	fs := flag.NewFlagSet("otctl dead "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	url := fs.String("amqp-url", os.Getenv("AMQP_URL"), "")
	secret := fs.String("amqp-secret", "", "")
	prefix := fs.String("prefix", envOr("BROKER_PREFIX", "ot"), "")
	limit := fs.Int("limit", 10000, "")
	all := fs.Bool("all", false, "")
	ids := fs.String("id", "", "")
	reason := fs.String("reason", "", "")
	older := fs.String("older-than", "", "")
	newer := fs.String("newer-than", "", "")
	dryRun := fs.Bool("dry-run", false, "")
	rest := args[2:]
	var showID string
	if cmd == "show" && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		showID, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return fmt.Errorf("%v\n%s", err, usage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected %q\n%s", fs.Args(), usage)
	}
	if *secret != "" {
		var err error
		if *url, err = readSecret(*secret); err != nil {
			return err
		}
	}
	if *url == "" {
		return errors.New("no broker: set AMQP_URL, -amqp-url or -amqp-secret")
	}
	topo := broker.Topology{Prefix: *prefix, Mode: broker.ModeLadder}
	var f deadletter.Filter
	switch cmd {
	case "list":
	case "show":
		if showID == "" {
			return errors.New("show needs the id of a message or an order")
		}
	case "redrive":
		f = deadletter.Filter{All: *all, Reason: *reason}
		if *ids != "" {
			f.IDs = strings.Split(*ids, ",")
		}
		var err error
		if f.OlderThan, err = when(*older, now); err != nil {
			return err
		}
		if f.NewerThan, err = when(*newer, now); err != nil {
			return err
		}
		if f.Empty() {
			return fmt.Errorf("redrive selects nothing: give -all, -id, -reason, -older-than or -newer-than\n%s", usage)
		}
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
	s, err := deadletter.Open(*url, topo, *limit)
	if err != nil {
		return err
	}
	defer s.Close()
	letters := s.Letters()
	switch cmd {
	case "list":
		return list(out, letters, topo, now)
	case "show":
		for _, l := range letters {
			if l.Message.ID == showID || l.Message.Subject == showID {
				return show(out, l)
			}
		}
		return fmt.Errorf("no dead letter with message or order id %q in %s", showID, topo.DeadQueue())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	outcomes, err := s.Redrive(ctx, f, *dryRun, now)
	verb, failed := "redriven", 0
	if *dryRun {
		verb = "would be redriven"
	}
	for _, o := range outcomes {
		if o.Err != nil {
			failed++
			fmt.Fprintf(out, "skipped %s: %v\n", o.Letter.Message.ID, o.Err)
			continue
		}
		fmt.Fprintf(out, "%s %s (order %s), due %s\n", verb, o.Letter.Message.ID, o.Letter.Message.Subject, o.DueAt.Format(time.RFC3339))
	}
	fmt.Fprintf(out, "%d %s, %d skipped, %d of %d dead letters not selected\n", len(outcomes)-failed, verb, failed, len(letters)-len(outcomes), len(letters))
	return err
}

func list(out io.Writer, letters []deadletter.Letter, topo broker.Topology, now time.Time) error {
	fmt.Fprintf(out, "%d dead letters in %s, newest first\n", len(letters), topo.DeadQueue())
	fmt.Fprintf(out, "%-44s %-28s %-24s %8s %10s  %s\n", "ID", "TYPE", "ORDER", "ATTEMPTS", "AGE", "REASON")
	for _, l := range letters {
		m := l.Message
		reason := m.Reason
		if l.Err != nil {
			reason = "unreadable: " + l.Err.Error()
		}
		fmt.Fprintf(out, "%-44s %-28s %-24s %8d %10s  %s\n", m.ID, m.Type, m.Subject, m.Attempt, l.Age(now), reason)
	}
	counts := deadletter.CountByReason(letters)
	reasons := make([]string, 0, len(counts))
	for r := range counts {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool { return counts[reasons[i]] > counts[reasons[j]] })
	fmt.Fprintln(out, "by reason:")
	for _, r := range reasons {
		fmt.Fprintf(out, "  %6d  %s\n", counts[r], r)
	}
	return nil
}

func show(out io.Writer, l deadletter.Letter) error {
	m := l.Message
	v := map[string]any{
		"id": m.ID, "type": m.Type, "orderId": m.Subject, "attempts": m.Attempt, "reason": m.Reason,
		"dueAt": m.DueAt, "createdAt": m.CreatedAt, "deadAt": m.DeadAt, "traceparent": m.Trace,
	}
	if json.Valid(m.Data) {
		v["data"] = json.RawMessage(m.Data)
	} else {
		v["data"] = string(m.Data)
	}
	if l.Err != nil {
		v["unreadable"] = l.Err.Error()
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// when reads a duration before now ("2h") or an RFC 3339 time; "" is zero.
func when(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration (2h) nor an RFC 3339 time", s)
	}
	return t, nil
}

// readSecret reads a Secret Manager secret's version (latest by default).
func readSecret(name string) (string, error) {
	if !strings.Contains(name, "/versions/") {
		name += "/versions/latest"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc, err := secretmanager.NewService(ctx)
	if err != nil {
		return "", fmt.Errorf("Secret Manager: %w", err)
	}
	v, err := svc.Projects.Secrets.Versions.Access(name).Context(ctx).Do()
	if err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	b, err := base64.StdEncoding.DecodeString(v.Payload.Data)
	if err != nil {
		return "", fmt.Errorf("decode %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
