// Package createorder is the CreateOrder function: the shopper's order
// routes over shared/ordering, which runs the saga. Each route decodes,
// calls the service and encodes the answer.
//
//	POST /                   create (Idempotency-Key optional)
//	GET  /                   list mine: ?status=&pageSize=&pageToken=
//	GET  /{orderId}          read mine
//	POST /{orderId}/cancel   give up mine while UNPAID
//	POST /extend             internal: move a deadline later
package createorder

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/ordertimeout/ordertimeout/shared/app"
	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/clients"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/httpx"
	"github.com/ordertimeout/ordertimeout/shared/logging"
	"github.com/ordertimeout/ordertimeout/shared/ordering"
)

func init() {
	functions.HTTP("CreateOrder", app.Lazy(func(ctx context.Context) (http.Handler, error) {
		env, cleanup, err := app.NewEnv(ctx, config.EnvProject, config.EnvAuthSecret, config.EnvInternalSecret,
			config.EnvAMQPURL, config.EnvDeductStockURL, config.EnvClearCartURL, config.EnvPayURL)
		if err != nil {
			return nil, err
		}
		app.OnTerminate(env.Log, cleanup)
		return app.Serve("CreateOrder", env.Log, env.Cfg.Project, New(env.Ordering(), env.Users, env.Internal)), nil
	}))
}

// Handler serves CreateOrder.
type Handler struct {
	svc      *ordering.Service
	users    auth.Users
	internal auth.Internal
	mux      http.Handler
}

// New returns the handler.
func New(svc *ordering.Service, users auth.Users, internal auth.Internal) *Handler {
	h := &Handler{svc: svc, users: users, internal: internal}
	mux := httpx.NewMux()
	mux.HandleFunc("POST /extend", h.extend)
	mux.HandleFunc("POST /{$}", httpx.AsUser(h.users, h.create))
	mux.HandleFunc("POST /{orderId}/cancel", httpx.AsUser(h.users, h.cancel))
	mux.HandleFunc("GET /{$}", httpx.AsUser(h.users, h.list))
	mux.HandleFunc("GET /{orderId...}", httpx.AsUser(h.users, h.get)) // the id is checked whole (httpx.PathID)
	h.mux = mux
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) create(r *http.Request, uid string) (int, any, error) {
	var body Request
	if err := httpx.DecodeBody(r, &body); err != nil {
		return 0, nil, err
	}
	req, err := h.Parse(uid, body, r.Header.Get("Idempotency-Key"))
	if err != nil {
		return 0, nil, err
	}
	o, created, err := h.svc.Create(r.Context(), req)
	if err != nil {
		return 0, nil, err
	}
	if !created {
		return http.StatusOK, View(o), nil
	}
	return http.StatusCreated, View(o), nil
}

// Parse validates a create body; every failure is a *domain.InvalidError.
func (h *Handler) Parse(uid string, body Request, key string) (ordering.CreateRequest, error) {
	wants, err := clients.Wants(body.Items)
	if err != nil {
		return ordering.CreateRequest{}, err
	}
	return h.svc.NewCreate(uid, wants, body.PaymentTimeoutSeconds, key)
}

func (h *Handler) get(r *http.Request, uid string) (int, any, error) {
	id, ok, err := httpx.PathID(r, "orderId")
	if err == nil && !ok {
		err = domain.ErrNotFound
	}
	if err != nil {
		return 0, nil, err
	}
	o, err := h.svc.Get(r.Context(), uid, id)
	return http.StatusOK, View(o), err
}

func (h *Handler) cancel(r *http.Request, uid string) (int, any, error) {
	id := r.PathValue("orderId")
	if err := domain.CheckID("orderId", id); err != nil {
		return 0, nil, err
	}
	o, err := h.svc.Cancel(r.Context(), uid, id)
	return http.StatusOK, View(o), err
}

func (h *Handler) list(r *http.Request, uid string) (int, any, error) {
	q, err := listQuery(r)
	if err != nil {
		return 0, nil, err
	}
	page, err := h.svc.List(r.Context(), uid, q)
	if err != nil {
		return 0, nil, err
	}
	out := ListJSON{Orders: make([]OrderJSON, len(page.Orders)), NextPageToken: page.Next}
	for i, o := range page.Orders {
		out.Orders[i] = View(o)
	}
	return http.StatusOK, out, nil
}

// listQuery reads ?status=&pageSize=&pageToken=.
func listQuery(r *http.Request) (ordering.ListQuery, error) {
	params, err := httpx.Query(r, "status", "pageSize", "pageToken")
	if err != nil {
		return ordering.ListQuery{}, err
	}
	q := ordering.ListQuery{Status: domain.OrderStatus(params["status"]), PageToken: params["pageToken"]}
	if v, ok := params["pageSize"]; ok {
		if q.PageSize, err = strconv.Atoi(v); err != nil || q.PageSize < 1 {
			return q, domain.Invalidf("pageSize must be a whole number between 1 and %d", ordering.MaxPageSize)
		}
	}
	return q, nil
}

func (h *Handler) extend(w http.ResponseWriter, r *http.Request) {
	var req ExtendRequest
	var deadline time.Time
	if !httpx.Bind(w, r, h.internal, &req, func() error {
		if err := domain.CheckID("orderId", req.OrderID); err != nil {
			return err
		}
		d, err := time.Parse(time.RFC3339Nano, req.Deadline)
		if err != nil {
			return domain.Invalidf("deadline must be an RFC 3339 time")
		}
		deadline = d.UTC().Truncate(time.Microsecond)
		return nil
	}) {
		return
	}
	o, err := h.svc.Extend(r.Context(), req.OrderID, deadline)
	if err != nil {
		httpx.Error(w, r, err, logging.KeyOrderID, req.OrderID)
		return
	}
	httpx.JSON(w, http.StatusOK, View(o))
}
