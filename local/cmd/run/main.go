// Command run brings the whole system up on one machine: RabbitMQ (started
// if installed and not running), the Firestore emulator on a free port, each
// of the five functions in its own functions-framework process, the relay,
// and demo data. It prints every URL, a token per demo user and a curl
// walk-through, stays in the foreground, and on Ctrl-C or SIGTERM stops
// every child (the emulator's Java process included).
//
//	make run    # or: go run ./local/cmd/run
//
// Ports (override with the environment): PORT_CREATEORDER 8081,
// PORT_DEDUCTSTOCK 8082, PORT_CLEARCART 8083, PORT_PAY 8084,
// PORT_HANDLETIMEOUT 8085, PORT_RELAY 8086 (health and metrics), PORT_SWEEP
// 8087 (the sweeper, called every SWEEP_INTERVAL, default 30s).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordertimeout/ordertimeout/local/emulator"
	"github.com/ordertimeout/ordertimeout/local/proc"
	"github.com/ordertimeout/ordertimeout/local/rabbitcluster"
	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/orderevents"
)

// Local-only secrets: printed, never used outside this machine.
const (
	userSecret     = "local-user-secret-change-me"
	internalSecret = "local-internal-secret-change-me"
	project        = "ordertimeout-local"
	// eventsSubscription is a pull subscription on the order events that
	// anyone may read (demo and load make their own).
	eventsSubscription = "order-events-all"
)

type fn struct {
	name    string
	portEnv string
	port    int
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
}

func envPort(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	p, err := strconv.Atoi(v)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%s=%q is not a port", name, v)
	}
	return p, nil
}

func portFree(p int) error {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return fmt.Errorf("port %d is taken (%v): stop what uses it or choose another port with the PORT_* variables", p, err)
	}
	return l.Close()
}

func waitTCP(addr string, within time.Duration, p *proc.Proc) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited: %v", p.Name, p.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not listen on %s within %v", p.Name, addr, within)
}

func run() error {
	fns := []*fn{
		{name: "CreateOrder", portEnv: "PORT_CREATEORDER", port: 8081},
		{name: "DeductStock", portEnv: "PORT_DEDUCTSTOCK", port: 8082},
		{name: "ClearCart", portEnv: "PORT_CLEARCART", port: 8083},
		{name: "Pay", portEnv: "PORT_PAY", port: 8084},
		{name: "HandleTimeout", portEnv: "PORT_HANDLETIMEOUT", port: 8085},
		{name: "Sweep", portEnv: "PORT_SWEEP", port: 8087},
	}
	relayPort, err := envPort("PORT_RELAY", 8086)
	if err != nil {
		return err
	}
	for _, f := range fns {
		if f.port, err = envPort(f.portEnv, f.port); err != nil {
			return err
		}
		if err := portFree(f.port); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		if err := portFree(f.port + 1000); err != nil {
			return fmt.Errorf("%s metrics (its port + 1000): %w", f.name, err)
		}
	}
	if err := portFree(relayPort); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	url := func(name string) string { return fmt.Sprintf("http://127.0.0.1:%d", portOf(fns, name)) }

	dir := ".run"
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var group proc.Group
	// Functions and the relay are kept running as Cloud Run keeps its
	// instances: one that exits is started again (proc.Keep).
	keepCtx, stopKeeping := context.WithCancel(ctx)
	var cluster *rabbitcluster.Cluster // with RABBITMQ_CLUSTER: stopped after everything that uses it
	defer func() {
		stopKeeping()
		fmt.Println("stopping every process…")
		group.StopAll(10 * time.Second)
		if cluster != nil {
			cluster.Stop()
		}
		fmt.Println("stopped.")
	}()
	say := func(line string) { fmt.Println("↻", line) }

	amqpURL := os.Getenv("AMQP_URL")
	if amqpURL == "" {
		amqpURL = "amqp://guest:guest@127.0.0.1:5672/"
	}
	var clusterNodes []string // name=pidfile, for the chaos run
	if n := os.Getenv("RABBITMQ_CLUSTER"); n != "" {
		// A cluster of our own instead of the machine's broker: the clients
		// get every node's URL and move to a live one when theirs dies.
		size, perr := strconv.Atoi(n)
		if perr != nil || size < 1 || size > 5 {
			return fmt.Errorf("RABBITMQ_CLUSTER=%q: want a node count from 1 to 5", n)
		}
		fmt.Printf("… starting a RabbitMQ cluster of %d nodes\n", size)
		var err2 error
		if cluster, err2 = rabbitcluster.Start(size, proc.FreePort); err2 != nil {
			return err2
		}
		amqpURL = cluster.URLs()
		for _, nd := range cluster.Nodes {
			clusterNodes = append(clusterNodes, nd.Name+"="+nd.PIDFile())
		}
	} else if err := ensureRabbit(amqpURL); err != nil {
		return err
	}
	fmt.Println("✓ RabbitMQ at", amqpURL)

	emuProc, err := startEmulator(&group, logs)
	if err != nil {
		return err
	}
	emu := emuProc.Host
	fmt.Printf("✓ Firestore emulator at %s (pid %d)\n", emu, emuProc.Cmd.Process.Pid)
	psOut, err := os.Create(filepath.Join(logs, "pubsub-emulator.log"))
	if err != nil {
		return err
	}
	psProc, err := emulator.StartPubSub(&group, psOut)
	if err != nil {
		return fmt.Errorf("%w; see %s", err, psOut.Name())
	}
	ps := psProc.Host
	os.Setenv("PUBSUB_EMULATOR_HOST", ps)
	topic := envOr("EVENTS_TOPIC", orderevents.DefaultTopic)
	if err := orderevents.EnsureTopic(ctx, project, topic, eventsSubscription); err != nil {
		return fmt.Errorf("order events topic: %w", err)
	}
	fmt.Printf("✓ Pub/Sub emulator at %s: topic %s, subscription %s (pid %d)\n", ps, topic, eventsSubscription, psProc.Cmd.Process.Pid)

	fmt.Println("… building the function and relay binaries")
	bin := filepath.Join(dir, "bin")
	for _, b := range []struct{ name, pkg string }{{"function", "./local/cmd/function"}, {"relay", "./shared/cmd/relay"}, {"seed", "./local/cmd/seed"}} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(bin, b.name), b.pkg).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	common := []string{
		"FIRESTORE_EMULATOR_HOST=" + emu, "FIRESTORE_PROJECT_ID=" + project,
		"AUTH_MODE=hs256", "AUTH_HS256_SECRET=" + userSecret,
		"INTERNAL_AUTH_MODE=shared-secret", "INTERNAL_SHARED_SECRET=" + internalSecret,
		"AMQP_URL=" + amqpURL, "BROKER_MODE=" + envOr("BROKER_MODE", "ladder"), "BROKER_PREFIX=" + envOr("BROKER_PREFIX", "ot"),
		"DEDUCTSTOCK_URL=" + url("DeductStock"), "CLEARCART_URL=" + url("ClearCart"), "PAY_URL=" + url("Pay"),
		"SWEEP_GRACE=" + envOr("SWEEP_GRACE", "10s"), "SWEEP_SAGA_BUDGET=" + envOr("SWEEP_SAGA_BUDGET", "30s"),
		"PUBSUB_EMULATOR_HOST=" + ps, "PUBSUB_PROJECT_ID=" + project, "EVENTS_TOPIC=" + topic,
		"REMIND_BEFORE=" + envOr("REMIND_BEFORE", "0"),
		"MAX_UNPAID_ORDERS_PER_SHOPPER=" + envOr("MAX_UNPAID_ORDERS_PER_SHOPPER", "10"),
	}
	for _, f := range fns {
		out, err := os.Create(filepath.Join(logs, f.name+".log"))
		if err != nil {
			return err
		}
		p, err := group.Keep(keepCtx, say, f.name, out, append(common, "FUNCTION_TARGET="+f.name, fmt.Sprintf("PORT=%d", f.port),
			fmt.Sprintf("METRICS_PORT=%d", f.port+1000)), filepath.Join(bin, "function"))
		if err != nil {
			return err
		}
		if err := waitTCP(fmt.Sprintf("127.0.0.1:%d", f.port), 30*time.Second, p); err != nil {
			return err
		}
	}
	rout, err := os.Create(filepath.Join(logs, "relay.log"))
	if err != nil {
		return err
	}
	rp, err := group.Keep(keepCtx, say, "relay", rout, append(common, "RELAY_TARGET_URL="+url("HandleTimeout"), fmt.Sprintf("PORT=%d", relayPort)), filepath.Join(bin, "relay"))
	if err != nil {
		return err
	}
	if err := waitHealthy(fmt.Sprintf("http://127.0.0.1:%d/healthz", relayPort), 30*time.Second, rp); err != nil {
		return err
	}

	// The demo and load commands read where everything is from here.
	envFile := filepath.Join(dir, "env")
	lines := append([]string{"FIRESTORE_EMULATOR_HOST=" + emu, "FIRESTORE_PROJECT_ID=" + project, "AUTH_HS256_SECRET=" + userSecret,
		"INTERNAL_SHARED_SECRET=" + internalSecret, "AMQP_URL=" + amqpURL, "RABBITMQ_CLUSTER_NODES=" + strings.Join(clusterNodes, ","),
		"PUBSUB_EMULATOR_HOST=" + ps, "PUBSUB_PROJECT_ID=" + project, "EVENTS_TOPIC=" + topic, "EVENTS_SUBSCRIPTION=" + eventsSubscription}, func() []string {
		var out []string
		for _, f := range fns {
			out = append(out, fmt.Sprintf("URL_%s=http://127.0.0.1:%d", strings.ToUpper(f.name), f.port),
				fmt.Sprintf("METRICS_%s=http://127.0.0.1:%d/metrics", strings.ToUpper(f.name), f.port+1000))
		}
		return append(out, fmt.Sprintf("METRICS_RELAY=http://127.0.0.1:%d/metrics", relayPort))
	}()...)
	if err := os.WriteFile(envFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(envFile)

	seedFile := envOr("SEED_FILE", "local/seed.json")
	seed := exec.Command(filepath.Join(bin, "seed"), "-project", project, "-file", seedFile)
	seed.Env = append(os.Environ(), "FIRESTORE_EMULATOR_HOST="+emu)
	if out, err := seed.CombinedOutput(); err != nil {
		return fmt.Errorf("seed %s: %v\n%s", seedFile, err, out)
	}
	fmt.Println("✓ demo data from", seedFile)
	printGuide(fns, relayPort, logs)
	fmt.Println("READY")

	interval, err := time.ParseDuration(envOr("SWEEP_INTERVAL", "30s"))
	if err != nil || interval <= 0 {
		return fmt.Errorf("SWEEP_INTERVAL=%q: want a duration such as 30s", os.Getenv("SWEEP_INTERVAL"))
	}
	go sweepEvery(ctx, url("Sweep"), interval, filepath.Join(logs, "sweeper-calls.log"))

	// What the run cannot replace stops it: the emulator (it holds every
	// order), or RabbitMQ gone for a minute (an outage of seconds, which the
	// functions and the relay ride out, does not).
	brokerGone := make(chan struct{})
	go watchBroker(keepCtx, amqpURL, time.Minute, brokerGone)
	select {
	case <-ctx.Done():
		return nil
	case <-emuProc.Done():
		return fmt.Errorf("the Firestore emulator exited (%v): every order lived in it, so the run stops; see %s/firestore-emulator.log", emuProc.Err(), logs)
	case <-psProc.Done():
		return fmt.Errorf("the Pub/Sub emulator exited (%v): the order events' topic lived in it, so the run stops; see %s/pubsub-emulator.log", psProc.Err(), logs)
	case <-brokerGone:
		return fmt.Errorf("RabbitMQ at %s has not answered for a minute: the run stops (start it with rabbitmq-server -detached, then make run)", amqpURL)
	}
}

// watchBroker closes gone once the broker at url has not answered for
// `for` (checked every 5 s), unless ctx ends first.
func watchBroker(ctx context.Context, url string, d time.Duration, gone chan<- struct{}) {
	last := time.Now()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c, err := broker.Dial(url, 3*time.Second); err == nil {
			_ = c.Close()
			last = time.Now()
		} else if time.Since(last) > d {
			close(gone)
			return
		}
	}
}

// sweepEvery calls the Sweep function periodically, as Cloud Scheduler does
// in production.
func sweepEvery(ctx context.Context, url string, every time.Duration, logFile string) {
	out, err := os.Create(logFile)
	if err != nil {
		return
	}
	defer out.Close()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/", nil)
		req.Header.Set("X-Internal-Token", internalSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Fprintf(out, "%s sweep failed: %v\n", time.Now().Format(time.RFC3339), err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(out, "%s %d %s", time.Now().Format(time.RFC3339), resp.StatusCode, body)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func ensureRabbit(url string) error {
	if c, err := amqp.Dial(url); err == nil {
		return c.Close()
	}
	if !strings.Contains(url, "127.0.0.1") && !strings.Contains(url, "localhost") {
		return fmt.Errorf("RabbitMQ at %s does not answer", url)
	}
	if _, err := exec.LookPath("rabbitmq-server"); err != nil {
		return errors.New("RabbitMQ is not running and not installed: install it (apt-get install rabbitmq-server) or set AMQP_URL")
	}
	fmt.Println("… starting RabbitMQ (rabbitmq-server -detached)")
	if out, err := exec.Command("rabbitmq-server", "-detached").CombinedOutput(); err != nil {
		return fmt.Errorf("rabbitmq-server -detached: %v\n%s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := amqp.Dial(url); err == nil {
			return c.Close()
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("RabbitMQ did not come up at %s within 60 s", url)
}

func startEmulator(g *proc.Group, logs string) (*emulator.Emulator, error) {
	out, err := os.Create(filepath.Join(logs, "firestore-emulator.log"))
	if err != nil {
		return nil, err
	}
	e, err := emulator.Start(g, out)
	if err != nil {
		return nil, fmt.Errorf("%w; see %s", err, out.Name())
	}
	return e, nil
}

func waitHealthy(url string, within time.Duration, p *proc.Proc) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited: %v", p.Name, p.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not healthy within %v", p.Name, within)
}

// portOf is the port of the function named name.
func portOf(fns []*fn, name string) int {
	for _, f := range fns {
		if f.name == name {
			return f.port
		}
	}
	panic("no function " + name)
}

func printGuide(fns []*fn, relayPort int, logs string) {
	fmt.Println()
	fmt.Println("Functions (each its own functions-framework process):")
	for _, f := range fns {
		fmt.Printf("  %-14s http://127.0.0.1:%d   metrics http://127.0.0.1:%d/metrics\n", f.name, f.port, f.port+1000)
	}
	fmt.Printf("  %-14s http://127.0.0.1:%d/healthz  http://127.0.0.1:%d/metrics\n", "relay", relayPort, relayPort)
	fmt.Printf("Logs: %s/*.log\n", logs)
	fmt.Println()
	fmt.Println("Internal credential header: X-Internal-Token: " + internalSecret)
	fmt.Println("Tokens (24 h):")
	for _, u := range []string{"alice", "bob"} {
		tok, _ := auth.SignHS256([]byte(userSecret), u, 24*time.Hour)
		fmt.Printf("  export %s=%s\n", strings.ToUpper(u), tok)
	}
	fmt.Printf("Sweeper: POSTed every SWEEP_INTERVAL to http://127.0.0.1:%d (its answers in %s/sweeper-calls.log)\n", portOf(fns, "Sweep"), logs)
	co, pay, cart, stock := portOf(fns, "CreateOrder"), portOf(fns, "Pay"), portOf(fns, "ClearCart"), portOf(fns, "DeductStock")
	fmt.Printf(`
Walk-through (copy-paste):
  # alice's cart and the stock of a mug
  curl -s -H "Authorization: Bearer $ALICE" http://127.0.0.1:%[3]d/
  curl -s http://127.0.0.1:%[4]d/mug
  # create → pay → PAID
  ORDER=$(curl -s -X POST -H "Authorization: Bearer $ALICE" -H 'Content-Type: application/json' \
    -d '{"items":[{"itemId":"mug","quantity":2}],"paymentTimeoutSeconds":60}' http://127.0.0.1:%[1]d/ | sed 's/.*"orderId":"\([^"]*\)".*/\1/')
  curl -s -X POST -H "Authorization: Bearer $ALICE" -H 'Content-Type: application/json' -d "{\"orderId\":\"$ORDER\"}" http://127.0.0.1:%[2]d/
  sleep 1; curl -s -H "Authorization: Bearer $ALICE" http://127.0.0.1:%[1]d/$ORDER
  # create → no payment → CANCELLED after 5 s, stock back
  ORDER=$(curl -s -X POST -H "Authorization: Bearer $ALICE" -H 'Content-Type: application/json' \
    -d '{"items":[{"itemId":"tea","quantity":1}],"paymentTimeoutSeconds":5}' http://127.0.0.1:%[1]d/ | sed 's/.*"orderId":"\([^"]*\)".*/\1/')
  sleep 7; curl -s -H "Authorization: Bearer $ALICE" http://127.0.0.1:%[1]d/$ORDER
  curl -s http://127.0.0.1:%[4]d/tea

Ctrl-C (or SIGTERM to pid %[5]d) stops everything.
`, co, pay, cart, stock, os.Getpid())
}
