// Command relay consumes due messages from RabbitMQ and delivers them to
// HandleTimeout as CloudEvents. It serves /healthz and /metrics on PORT.
// Its settings are config.RelayVars (see README "Relay").
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/logging"
	"github.com/ordertimeout/ordertimeout/shared/relay"
	"github.com/ordertimeout/ordertimeout/shared/telemetry"
)

func main() {
	cfg, err := config.LoadRelay(os.LookupEnv)
	log := logging.ForLevel(cfg.LogLevel)
	if err == nil {
		err = run(cfg)
	}
	if err != nil {
		log.Error("relay failed", "error", err.Error())
		os.Exit(1)
	}
}

func run(cfg config.Relay) error {
	log := logging.ForLevel(cfg.LogLevel)
	promReader, promHandler, err := telemetry.NewPrometheus()
	if err != nil {
		return err
	}
	shutdown, err := telemetry.Setup(cfg.TraceExporter, "", promReader)
	if err != nil {
		return err
	}
	defer func() {
		// Flush the last spans and metrics, within Cloud Run's grace.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(ctx)
	}()
	opt := relay.Options{
		AMQPURL:     cfg.AMQPURL,
		Topology:    broker.Topology{Prefix: cfg.BrokerPrefix, Mode: cfg.BrokerMode},
		Target:      cfg.Target,
		Concurrency: cfg.Concurrency,
		Prefetch:    cfg.Prefetch,
		MaxAttempts: cfg.MaxAttempts,
		BackoffBase: cfg.BackoffBase,
		BackoffMax:  cfg.BackoffMax,
		HTTPTimeout: cfg.HTTPTimeout,
		Drain:       cfg.Drain,
		Signer:      auth.SignerFor(cfg.InternalMode, cfg.InternalSecret),
		Log:         log,
	}
	if cfg.InternalMode == config.InternalSecret {
		opt.Token = cfg.InternalSecret
	}
	opt.ImmediateRetries = cfg.Immediate
	if cfg.Immediate == 0 {
		opt.ImmediateRetries = -1 // in Options, 0 means the default
	}
	r, err := relay.New(opt)
	if err != nil {
		return err
	}
	if err := r.Metrics.RegisterOTel(otel.Meter(telemetry.Name)); err != nil {
		return err
	}
	if err := telemetry.RegisterProcessCPU(); err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !r.Metrics.Connected.Load() {
			http.Error(w, "not connected to the broker", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promHandler)
	srv := &http.Server{Addr: ":" + cfg.Port, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
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
