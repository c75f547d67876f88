// Package handletimeout is the HandleTimeout function. The relay delivers
// it CloudEvents (binary or structured HTTP mode):
//
//   - orders.timeout.due.v1 {orderId, deadline}: decide the order at its deadline;
//   - orders.payment.succeeded.v1 {orderId, payOrderId}: Pay's announcement;
//     the payment is confirmed with Pay, then the order becomes PAID;
//   - orders.payment.check.v1 {orderId, deadline}: an early check; PAID if
//     the payment succeeded, else nothing.
//
// Answers: nil (2xx) when done, also for duplicates and stale events; a 4xx
// result for a malformed event (the relay dead-letters it); any other error
// (5xx) when the payment state is unknown or a dependency failed, so the
// relay retries. It never cancels on a guess.
package handletimeout

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordertimeout/ordertimeout/shared/app"
	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/events"
	"github.com/ordertimeout/ordertimeout/shared/httpx"
	"github.com/ordertimeout/ordertimeout/shared/logging"
	"github.com/ordertimeout/ordertimeout/shared/store"
	"github.com/ordertimeout/ordertimeout/shared/telemetry"
	"github.com/ordertimeout/ordertimeout/shared/timeout"
)

// TokenExtension is the CloudEvent extension that carries the internal
// shared secret in local/test mode (HTTP header ce-internaltoken in binary
// mode; the X-Internal-Token header is taken too). In production (google
// mode) IAM lets only the relay's service account invoke the function, and
// the function checks the caller's ID token in code as well (audience,
// issuer, times, INTERNAL_ALLOWED_CALLERS), as Sweep does.
const TokenExtension = "internaltoken"

func init() {
	// Registered as an HTTP function that receives CloudEvents itself (see
	// app.Events): functions-framework's CloudEvent wrapper can leave a
	// request blocked for good when the relay cancels one.
	functions.HTTP("HandleTimeout", app.Lazy(func(ctx context.Context) (http.Handler, error) {
		env, cleanup, err := app.NewEnv(ctx, config.EnvProject, config.EnvInternalSecret, config.EnvAMQPURL,
			config.EnvPayURL, config.EnvDeductStockURL)
		if err != nil {
			return nil, err
		}
		app.OnTerminate(env.Log, cleanup)
		return New(env.Decider(), env.Cfg, env.Log, env.Internal).HTTPHandler(), nil
	}))
}

// Handler decides the events.
type Handler struct {
	decider *timeout.Decider
	secret  string // shared-secret mode: the token events carry
	// idToken checks the caller's ID token in google mode (nil otherwise).
	idToken auth.Internal
	log     *slog.Logger
	project string
}

// New returns the handler; internal checks callers in google mode.
func New(d *timeout.Decider, cfg config.Config, log *slog.Logger, internal auth.Internal) *Handler {
	h := &Handler{decider: d, log: log, project: cfg.Project}
	if cfg.InternalMode == config.InternalSecret {
		h.secret = cfg.InternalSecret
	} else {
		h.idToken = internal
	}
	return h
}

// result is the framework's answer for err: the status and the contract's
// error body, from the one mapper (the CloudEvents SDK writes the result's
// text as the body).
func result(err error) error {
	status, body := httpx.Body(err)
	data, _ := json.Marshal(body)
	return cehttp.NewResult(status, "%s", data)
}

// Handle decides one event.
func (h *Handler) Handle(ctx context.Context, e cloudevents.Event) error {
	log := h.log.With("event_id", e.ID(), "event_type", e.Type())
	tp, _ := e.Extensions()["traceparent"].(string)
	ctx, span := telemetry.Tracer().Start(telemetry.Extract(ctx, tp), "HandleTimeout "+e.Type(), trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	if a := logging.TraceAttr(h.project, telemetry.Inject(ctx)); a.Key != "" {
		log = log.With(a)
	}
	if h.secret != "" {
		tok, _ := e.Extensions()[TokenExtension].(string)
		if tok == "" {
			tok, _ = ctx.Value(headerToken{}).(string)
		}
		if tok == "" {
			log.Error("event refused: no internal token (the relay retries it; check INTERNAL_SHARED_SECRET on both)")
			return result(fmt.Errorf("no %s extension: %w", TokenExtension, domain.ErrUnauthenticated))
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(h.secret)) != 1 {
			log.Error("event refused: wrong internal token (the relay retries it; check INTERNAL_SHARED_SECRET on both)")
			return result(fmt.Errorf("wrong %s extension: %w", TokenExtension, domain.ErrForbidden))
		}
	}
	ctx = store.WithSource(logging.With(ctx, log), "HandleTimeout")
	orderID, decide, err := h.parse(e)
	if err != nil {
		log.Warn("malformed event", "error", err.Error())
		return result(err)
	}
	out, err := decide(ctx)
	log = log.With(logging.KeyOrderID, orderID)
	span.SetAttributes(attribute.String(logging.KeyOrderID, orderID), attribute.String("outcome", string(out)))
	if errors.Is(err, domain.ErrNotFound) && e.Type() != events.TypeTimeoutDue {
		// Pay announces only payments of existing orders: the event itself
		// is wrong, and 422 dead-letters it (a 404 would be retried as a
		// wrong URL).
		log.Warn("event for an unknown order", "error", err.Error())
		return result(fmt.Errorf("%w: %w", domain.ErrUnprocessable, err))
	}
	if err != nil {
		log.Error("decision deferred; the relay retries", "error", err.Error())
		if status, _ := httpx.Status(err); status < 500 {
			err = domain.ErrUnavailable // never a 4xx: that would dead-letter a timer on a guess
		}
		return result(err)
	}
	log.Info("event handled", "outcome", string(out))
	return nil
}

// parse reads an event's order id and picks its decision; a malformed or
// unknown event is a *domain.InvalidError (400: dead-lettered).
func (h *Handler) parse(e cloudevents.Event) (string, func(context.Context) (timeout.Outcome, error), error) {
	var (
		orderID  string
		deadline time.Time
		err      error
	)
	switch e.Type() {
	case events.TypeTimeoutDue, events.TypePaymentCheck, events.TypeReminderDue:
		orderID, deadline, err = events.ParseTimeout(e.Data())
	case events.TypePaymentSucceeded:
		orderID, err = events.ParsePaid(e.Data())
	default:
		return "", nil, domain.Invalidf("unknown event type %q", e.Type())
	}
	if err != nil {
		_, body := httpx.Body(err) // an invalid datum's own message, never an internal one
		return "", nil, domain.Invalidf("malformed %s data: %s", e.Type(), body.Error.Message)
	}
	switch e.Type() {
	case events.TypeTimeoutDue:
		return orderID, func(ctx context.Context) (timeout.Outcome, error) { return h.decider.Due(ctx, orderID, deadline) }, nil
	case events.TypeReminderDue:
		return orderID, func(ctx context.Context) (timeout.Outcome, error) { return h.decider.Remind(ctx, orderID, deadline) }, nil
	}
	return orderID, func(ctx context.Context) (timeout.Outcome, error) { return h.decider.Check(ctx, orderID) }, nil
}

// headerToken is the context key of the request's X-Internal-Token header.
type headerToken struct{}

// HTTPHandler serves Handle over HTTP: binary and structured CloudEvents,
// each answered in its request's goroutine. The internal secret may also
// come as the X-Internal-Token header every other internal route takes.
func (h *Handler) HTTPHandler() http.Handler {
	events := app.Events(h.Handle)
	return app.Counted("HandleTimeout", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.idToken != nil {
			if err := h.idToken.Check(r); err != nil {
				h.log.Error("event refused: the caller's ID token was not accepted (the relay retries it; check the relay's service account and INTERNAL_ALLOWED_CALLERS)", "error", err.Error())
				httpx.Error(w, r, err)
				return
			}
		}
		if tok := r.Header.Get(auth.InternalHeader); tok != "" {
			r = r.WithContext(context.WithValue(r.Context(), headerToken{}, tok))
		}
		events.ServeHTTP(w, r)
	}))
}
