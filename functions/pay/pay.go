// Package pay is the Pay function: the owner pays an order from the wallet
// and reads it; internal callers query a pay order by business order number
// and close it at the deadline. A payment and a close of the same order
// serialise on its pay-order document: exactly one wins.
package pay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/ordertimeout/ordertimeout/shared/app"
	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/clients"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/httpx"
	"github.com/ordertimeout/ordertimeout/shared/logging"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

func init() {
	functions.HTTP("Pay", app.Lazy(func(ctx context.Context) (http.Handler, error) {
		env, cleanup, err := app.NewEnv(ctx, config.EnvProject, config.EnvInternalSecret, config.EnvAuthSecret, config.EnvAMQPURL)
		if err != nil {
			return nil, err
		}
		app.OnTerminate(env.Log, cleanup)
		return app.Serve("Pay", env.Log, env.Cfg.Project, New(env.Store, env.Users, env.Internal, env.Timers)), nil
	}))
}

// Handler serves Pay.
type Handler struct {
	store    *store.Store
	users    auth.Users
	internal auth.Internal
	announce Announcer
	mux      http.Handler
}

// Announcer announces a payment (events.Timers on the broker).
type Announcer interface {
	AnnouncePaid(ctx context.Context, orderID, payOrderID string, paidAt time.Time) error
}

// New returns the handler. announce publishes "payment succeeded".
func New(s *store.Store, users auth.Users, internal auth.Internal, announce Announcer) *Handler {
	h := &Handler{store: s, users: users, internal: internal, announce: announce}
	mux := httpx.NewMux()
	mux.HandleFunc("POST /{$}", httpx.AsUser(h.users, h.pay))
	mux.HandleFunc("POST /close", h.close)
	mux.HandleFunc("GET /{$}", h.query)
	mux.HandleFunc("GET /wallet", httpx.AsUser(h.users, h.wallet))
	h.mux = mux
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func newPayOrderID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return "p" + hex.EncodeToString(b)
}

func (h *Handler) pay(r *http.Request, uid string) (int, any, error) {
	var req clients.OrderRef
	if err := httpx.DecodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	if err := domain.CheckID("orderId", req.OrderID); err != nil {
		return 0, nil, err
	}
	p, changed, err := h.store.Pay(r.Context(), req.OrderID, uid, newPayOrderID())
	if err != nil {
		return 0, nil, err
	}
	log := logging.From(r.Context()).With(logging.KeyOrderID, req.OrderID)
	if changed {
		log.Info("payment succeeded", "pay_order_id", p.ID, "amount_cents", p.AmountCents)
	}
	// Announce on every successful answer: a repeated pay re-sends an
	// announcement that may have been lost. The payment stands either way;
	// the timeout check finds it if every announcement is lost.
	switch {
	case h.dropAnnouncement(r):
		log.Warn("announcement dropped on request (fault injection, local mode)")
	default:
		if err := h.announce.AnnouncePaid(r.Context(), p.BizOrderNo, p.ID, p.PaidAt); err != nil {
			log.Warn("payment announcement not published; the timeout check will find the payment", "error", err.Error())
		}
	}
	return http.StatusOK, clients.PayOrderView(p), nil
}

// FaultDropHeader asks Pay to "lose" the payment announcement, so the demo
// can show the timeout check finding the payment. It is honoured only in
// local/test mode (shared-secret internal auth) and only together with the
// internal credential; in production it is ignored.
const FaultDropHeader = "X-Fault-Drop-Announcement"

func (h *Handler) dropAnnouncement(r *http.Request) bool {
	if r.Header.Get(FaultDropHeader) == "" {
		return false
	}
	if _, local := h.internal.(auth.SharedSecret); !local {
		return false
	}
	return h.internal.Check(r) == nil
}

func (h *Handler) close(w http.ResponseWriter, r *http.Request) {
	var req clients.OrderRef
	if !httpx.Bind(w, r, h.internal, &req, func() error { return domain.CheckID("orderId", req.OrderID) }) {
		return
	}
	p, _, err := h.store.ClosePayOrder(r.Context(), req.OrderID, newPayOrderID())
	if err != nil {
		httpx.Error(w, r, err, logging.KeyOrderID, req.OrderID)
		return
	}
	httpx.JSON(w, http.StatusOK, clients.PayOrderView(p))
}

func (h *Handler) query(w http.ResponseWriter, r *http.Request) {
	if h.internal.Check(r) == nil {
		p, err := h.payOrder(r, "")
		if err != nil {
			httpx.Error(w, r, err)
			return
		}
		httpx.JSON(w, http.StatusOK, p)
		return
	}
	httpx.AsUser(h.users, func(r *http.Request, uid string) (int, any, error) {
		p, err := h.payOrder(r, uid)
		return http.StatusOK, p, err
	})(w, r)
}

// payOrder reads the pay order ?bizOrderNo= names; another owner's than
// owner (unless owner is "", an internal caller) is domain.ErrNotFound.
func (h *Handler) payOrder(r *http.Request, owner string) (clients.PayOrderJSON, error) {
	orderID := r.URL.Query().Get("bizOrderNo")
	if err := domain.CheckID("bizOrderNo", orderID); err != nil {
		return clients.PayOrderJSON{}, err
	}
	p, err := h.store.PayOrder(r.Context(), orderID)
	if err == nil && owner != "" && p.UserID != owner {
		err = fmt.Errorf("pay order of %q belongs to another user: %w", orderID, domain.ErrNotFound)
	}
	return clients.PayOrderView(p), err
}

// WalletJSON is the owner's view of a wallet.
type WalletJSON struct {
	UserID       string `json:"userId"`
	BalanceCents int64  `json:"balanceCents"`
}

func (h *Handler) wallet(r *http.Request, uid string) (int, any, error) {
	wl, err := h.store.Wallet(r.Context(), uid)
	return http.StatusOK, WalletJSON{UserID: wl.UserID, BalanceCents: wl.BalanceCents}, err
}
