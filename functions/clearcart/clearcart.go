// Package clearcart is the ClearCart function: internal callers remove an
// order's items from a cart (idempotent); the cart's owner reads it and sets
// lines.
package clearcart

import (
	"context"
	"fmt"
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
	functions.HTTP("ClearCart", app.Lazy(func(ctx context.Context) (http.Handler, error) {
		env, cleanup, err := app.NewEnv(ctx, config.EnvProject, config.EnvInternalSecret, config.EnvAuthSecret)
		if err != nil {
			return nil, err
		}
		app.OnTerminate(env.Log, cleanup)
		return app.Serve("ClearCart", env.Log, env.Cfg.Project, New(env.Store, env.Users, env.Internal)), nil
	}))
}

// Handler serves ClearCart.
type Handler struct {
	store    *store.Store
	users    auth.Users
	internal auth.Internal
	mux      http.Handler
}

// New returns the handler.
func New(s *store.Store, users auth.Users, internal auth.Internal) *Handler {
	h := &Handler{store: s, users: users, internal: internal}
	mux := httpx.NewMux()
	mux.HandleFunc("POST /{$}", h.clear)
	mux.HandleFunc("GET /{$}", httpx.AsUser(h.users, h.get))
	mux.HandleFunc("PUT /{itemId...}", httpx.AsUser(h.users, h.put)) // the id is checked whole (httpx.PathID)
	h.mux = mux
	return h
}

// CartJSON is the owner's view of a cart.
type CartJSON struct {
	UserID string             `json:"userId"`
	Items  []clients.LineJSON `json:"items"`
}

func view(c domain.Cart) CartJSON {
	v := CartJSON{UserID: c.UserID, Items: []clients.LineJSON{}}
	for _, l := range c.Lines {
		v.Items = append(v.Items, clients.LineJSON{ItemID: l.ItemID, Quantity: l.Quantity})
	}
	return v
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) clear(w http.ResponseWriter, r *http.Request) {
	var req clients.ClearRequest
	if !httpx.Bind(w, r, h.internal, &req, func() error {
		if err := domain.CheckID("userId", req.UserID); err != nil {
			return err
		}
		if len(req.ItemIDs) > domain.MaxLinesPerOrder {
			return domain.Invalidf("at most %d itemIds", domain.MaxLinesPerOrder)
		}
		for _, id := range req.ItemIDs {
			if err := domain.CheckID("itemIds[]", id); err != nil {
				return err
			}
		}
		return nil
	}) {
		return
	}
	c, err := h.store.UpdateCart(r.Context(), req.UserID, func(c *domain.Cart) (bool, error) { return c.Remove(req.ItemIDs), nil })
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, view(c))
}

func (h *Handler) get(r *http.Request, uid string) (int, any, error) {
	c, err := h.store.Cart(r.Context(), uid)
	return http.StatusOK, view(c), err
}

// PutLine is the body of PUT /{itemId}.
type PutLine struct {
	Quantity *int64 `json:"quantity"`
}

func (h *Handler) put(r *http.Request, uid string) (int, any, error) {
	itemID, ok, err := httpx.PathID(r, "itemId")
	if err == nil && !ok {
		err = fmt.Errorf("PUT needs an item id: %w", httpx.ErrMethodNotAllowed)
	}
	if err != nil {
		return 0, nil, err
	}
	var req PutLine
	if err := httpx.DecodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	if req.Quantity == nil || *req.Quantity < 0 || *req.Quantity > domain.MaxQuantityPerRow {
		return 0, nil, domain.Invalidf("quantity must be between 0 and %d (0 removes the line)", domain.MaxQuantityPerRow)
	}
	if *req.Quantity > 0 {
		if _, err := h.store.Item(r.Context(), itemID); err != nil {
			return 0, nil, err
		}
	}
	c, err := h.store.UpdateCart(r.Context(), uid, func(c *domain.Cart) (bool, error) { return c.Put(itemID, *req.Quantity) })
	return http.StatusOK, view(c), err
}
