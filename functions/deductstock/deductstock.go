// Package deductstock is the DeductStock function: internal callers deduct
// an order's stock (all or nothing, idempotent per order) and give it back
// (at most once); anyone may read an item.
package deductstock

import (
	"context"
	"net/http"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/ordertimeout/ordertimeout/shared/app"
	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/clients"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/httpx"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

func init() {
	functions.HTTP("DeductStock", app.Lazy(func(ctx context.Context) (http.Handler, error) {
		env, cleanup, err := app.NewEnv(ctx, config.EnvProject, config.EnvInternalSecret)
		if err != nil {
			return nil, err
		}
		app.OnTerminate(env.Log, cleanup)
		return app.Serve("DeductStock", env.Log, env.Cfg.Project, New(env.Store, env.Internal)), nil
	}))
}

// Handler serves DeductStock.
type Handler struct {
	store    *store.Store
	internal auth.Internal
	mux      http.Handler
}

// New returns the handler.
func New(s *store.Store, internal auth.Internal) *Handler {
	h := &Handler{store: s, internal: internal}
	mux := httpx.NewMux()
	mux.HandleFunc("POST /{$}", h.deduct)
	mux.HandleFunc("POST /restore", h.restore)
	mux.HandleFunc("GET /{itemId...}", h.item) // the id is checked whole (httpx.PathID)
	h.mux = mux
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) deduct(w http.ResponseWriter, r *http.Request) {
	var req clients.DeductRequest
	var wants []domain.Want
	if !httpx.Bind(w, r, h.internal, &req, func() error {
		if err := domain.CheckID("orderId", req.OrderID); err != nil {
			return err
		}
		var err error
		wants, err = clients.Wants(req.Items)
		return err
	}) {
		return
	}
	lines, err := h.store.Reserve(r.Context(), req.OrderID, wants)
	if err != nil {
		httpx.Error(w, r, err, "order_id", req.OrderID)
		return
	}
	resp := clients.DeductResponse{OrderID: req.OrderID, Items: make([]clients.LineJSON, len(lines))}
	for i, l := range lines {
		resp.Items[i] = clients.LineJSON(l)
	}
	httpx.JSON(w, http.StatusOK, resp)
}

func (h *Handler) restore(w http.ResponseWriter, r *http.Request) {
	var req clients.RestoreRequest
	if !httpx.Bind(w, r, h.internal, &req, func() error { return domain.CheckID("orderId", req.OrderID) }) {
		return
	}
	change, err := h.store.Restore(r.Context(), req.OrderID, req.OnlyIfNoOrder)
	if err != nil {
		httpx.Error(w, r, err, "order_id", req.OrderID)
		return
	}
	httpx.JSON(w, http.StatusOK, clients.RestoreResponse{OrderID: req.OrderID, Restored: change == domain.Applied})
}

// ItemJSON is the public view of an item.
type ItemJSON struct {
	ItemID     string `json:"itemId"`
	Name       string `json:"name"`
	PriceCents int64  `json:"priceCents"`
	Stock      int64  `json:"stock"`
	// MaxPerShopper is shown when the item has a purchase limit.
	MaxPerShopper int64 `json:"maxPerShopper,omitempty"`
}

func (h *Handler) item(w http.ResponseWriter, r *http.Request) {
	id, ok, err := httpx.PathID(r, "itemId")
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	if !ok {
		httpx.NotFound(w, r)
		return
	}
	it, err := h.store.Item(r.Context(), id)
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, ItemJSON{ItemID: it.ID, Name: it.Name, PriceCents: it.PriceCents, Stock: it.Stock, MaxPerShopper: it.MaxPerShopper})
}
