// Package sweeper is the Sweep function: an internal HTTP entry point that
// Cloud Scheduler calls every minute (and the local run periodically). It
// decides UNPAID orders whose timers were lost and releases reservations
// whose create never finished, through HandleTimeout's own code path.
package sweeper

import (
	"context"
	"net/http"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/ordertimeout/ordertimeout/shared/app"
	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/httpx"
	"github.com/ordertimeout/ordertimeout/shared/sweeper"
)

func init() {
	functions.HTTP("Sweep", app.Lazy(func(ctx context.Context) (http.Handler, error) {
		env, cleanup, err := app.NewEnv(ctx, config.EnvProject, config.EnvInternalSecret, config.EnvAMQPURL,
			config.EnvPayURL, config.EnvDeductStockURL)
		if err != nil {
			return nil, err
		}
		app.OnTerminate(env.Log, cleanup)
		return app.Serve("Sweep", env.Log, env.Cfg.Project, New(env.Sweeper(), env.Internal)), nil
	}))
}

// Handler serves Sweep.
type Handler struct {
	sweeper  *sweeper.Sweeper
	internal auth.Internal
	mux      http.Handler
}

// New returns the handler.
func New(s *sweeper.Sweeper, internal auth.Internal) *Handler {
	h := &Handler{sweeper: s, internal: internal}
	mux := httpx.NewMux()
	mux.HandleFunc("POST /{$}", h.sweep)
	h.mux = mux
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) sweep(w http.ResponseWriter, r *http.Request) {
	if err := h.internal.Check(r); err != nil {
		httpx.Error(w, r, err)
		return
	}
	rep, err := h.sweeper.Run(r.Context())
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, rep)
}
