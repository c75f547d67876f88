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
	"strings"
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
		env, err := app.NewEnv(ctx, config.EnvProject, config.EnvAuthSecret, config.EnvInternalSecret,
			config.EnvAMQPURL, config.EnvDeductStockURL, config.EnvClearCartURL, config.EnvPayURL)
		if err != nil {
			return nil, err
		}
		return app.Serve("CreateOrder", env.Log, env.Cfg.Project, New(env.Ordering(), env.Users, env.Internal)), nil
	}))
}

// Handler serves CreateOrder.
type Handler struct {
	svc      *ordering.Service
	users    auth.Users
	internal auth.Internal
}

// New returns the handler.
func New(svc *ordering.Service, users auth.Users, internal auth.Internal) *Handler {
	return &Handler{svc: svc, users: users, internal: internal}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, cancel := strings.CutSuffix(r.URL.Path, "/cancel")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/extend":
		h.extend(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/":
		h.create(w, r)
	case r.Method == http.MethodPost && cancel:
		h.cancel(w, r, id)
	case r.Method == http.MethodGet && r.URL.Path == "/":
		h.list(w, r)
	case r.Method == http.MethodGet:
		h.get(w, r)
	default:
		httpx.MethodNotAllowed(w, r)
	}
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	uid, err := auth.User(r.Context(), h.users, r)
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	var body Request
	if err := httpx.Decode(w, r, &body); err != nil {
		httpx.Error(w, r, err)
		return
	}
	req, err := h.Parse(uid, body, r.Header.Get("Idempotency-Key"))
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	o, created, err := h.svc.Create(r.Context(), req)
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	httpx.JSON(w, status, View(o))
}

// Parse validates a create body; every failure is a *domain.InvalidError.
func (h *Handler) Parse(uid string, body Request, key string) (ordering.CreateRequest, error) {
	wants, err := clients.Wants(body.Items)
	if err != nil {
		return ordering.CreateRequest{}, err
	}
	return h.svc.NewCreate(uid, wants, body.PaymentTimeoutSeconds, key)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	uid, err := auth.User(r.Context(), h.users, r)
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	id, ok, err := httpx.PathID(r, "orderId")
	if err == nil && !ok {
		err = domain.ErrNotFound
	}
	var o domain.Order
	if err == nil {
		o, err = h.svc.Get(r.Context(), uid, id)
	}
	if err != nil {
		httpx.Error(w, r, err, logging.KeyOrderID, id)
		return
	}
	httpx.JSON(w, http.StatusOK, View(o))
}

func (h *Handler) cancel(w http.ResponseWriter, r *http.Request, path string) {
	uid, err := auth.User(r.Context(), h.users, r)
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	id := strings.TrimPrefix(path, "/")
	if err := domain.CheckID("orderId", id); err != nil {
		httpx.Error(w, r, err)
		return
	}
	o, err := h.svc.Cancel(r.Context(), uid, id)
	if err != nil {
		httpx.Error(w, r, err, logging.KeyOrderID, id)
		return
	}
	httpx.JSON(w, http.StatusOK, View(o))
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	uid, err := auth.User(r.Context(), h.users, r)
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	q, err := listQuery(r)
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	page, err := h.svc.List(r.Context(), uid, q)
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	out := ListJSON{Orders: make([]OrderJSON, len(page.Orders)), NextPageToken: page.Next}
	for i, o := range page.Orders {
		out.Orders[i] = View(o)
	}
	httpx.JSON(w, http.StatusOK, out)
}

// listQuery reads ?status=&pageSize=&pageToken=; any other parameter, a
// repeated one or a pageSize that is not a number is a bad query.
func listQuery(r *http.Request) (ordering.ListQuery, error) {
	var q ordering.ListQuery
	for name, vs := range r.URL.Query() {
		if len(vs) != 1 {
			return q, domain.Invalidf("query parameter %q given %d times", name, len(vs))
		}
		switch v := vs[0]; name {
		case "status":
			q.Status = domain.OrderStatus(v)
		case "pageToken":
			q.PageToken = v
		case "pageSize":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return q, domain.Invalidf("pageSize must be a whole number between 1 and %d", ordering.MaxPageSize)
			}
			q.PageSize = n
		default:
			return q, domain.Invalidf("unknown query parameter %q (status, pageSize, pageToken)", name)
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
