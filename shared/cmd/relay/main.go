// Command relay consumes due messages from RabbitMQ and delivers them to
// HandleTimeout as CloudEvents. It serves /healthz and /metrics on PORT.
//
// Settings (environment): AMQP_URL, BROKER_PREFIX, BROKER_MODE,
// RELAY_TARGET_URL, RELAY_CONCURRENCY, RELAY_PREFETCH, RELAY_MAX_ATTEMPTS,
// RELAY_BACKOFF_BASE, RELAY_BACKOFF_MAX, RELAY_HTTP_TIMEOUT,
// RELAY_DRAIN_TIMEOUT, PORT, INTERNAL_AUTH_MODE, INTERNAL_SHARED_SECRET.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/app"
	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/logging"
	"github.com/ordertimeout/ordertimeout/shared/relay"
)

func main() {
	log := logging.Default()
	if err := run(); err != nil {
		log.Error("relay failed", "error", err.Error())
		os.Exit(1)
	}
}

func envInt(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q: want a non-negative integer", name, v)
	}
	return n, nil
}

func envDur(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a duration such as 500ms or 30s", name, v)
	}
	return d, nil
}

func run() error {
	cfg, err := config.Load(config.EnvAMQPURL, config.EnvRelayTarget, config.EnvInternalSecret)
	if err != nil {
		return err
	}
	log := logging.Default()
	opt := relay.Options{
		AMQPURL:  cfg.AMQPURL,
		Topology: app.Topology(cfg),
		Target:   os.Getenv(config.EnvRelayTarget),
		Log:      log,
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var e error
	opt.Concurrency, e = envInt(config.EnvRelayConcurrency, 64)
	add(e)
	opt.Prefetch, e = envInt("RELAY_PREFETCH", 0)
	add(e)
	opt.MaxAttempts, e = envInt(config.EnvRelayMaxAttempts, 20)
	add(e)
	opt.BackoffBase, e = envDur("RELAY_BACKOFF_BASE", time.Second)
	add(e)
	opt.BackoffMax, e = envDur("RELAY_BACKOFF_MAX", 5*time.Minute)
	add(e)
	opt.HTTPTimeout, e = envDur("RELAY_HTTP_TIMEOUT", 30*time.Second)
	add(e)
	opt.Drain, e = envDur(config.EnvRelayDrainDeadline, 20*time.Second)
	add(e)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	_, _, signer := auth.FromConfig(cfg)
	opt.Signer = signer
	if cfg.InternalMode == config.InternalSecret {
		opt.Token = cfg.InternalSecret
	}
	r := relay.New(opt)

	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !r.Metrics.Connected.Load() {
			http.Error(w, "not connected to the broker", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		r.Metrics.WritePrometheus(w)
	})
	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health server failed", "error", err.Error())
		}
	}()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = r.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	log.Info("relay stopped", "delivered", r.Metrics.Delivered.Load(), "in_flight", r.Metrics.InFlight.Load())
	return err
}
