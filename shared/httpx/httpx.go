// Package httpx holds the HTTP helpers every function shares: strict JSON
// decoding, JSON answers, and the one place where errors become HTTP status
// codes and the contract's error body.
package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/logging"
)

// MaxBody is the largest request body accepted (bytes).
const MaxBody = 64 << 10

// ErrorBody is the contract's error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Decode reads a JSON body into v: Content-Type must be JSON, unknown fields,
// trailing data and bodies over MaxBody are errors. Every failure is a
// *domain.InvalidError whose message is safe to show.
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return fmt.Errorf("Content-Type %.60q is not application/json: %w", ct, ErrUnsupportedMedia)
		}
	}
	return DecodeBytes(http.MaxBytesReader(w, r.Body, MaxBody), v)
}

// DecodeBytes is Decode's strict JSON reading, for any reader.
func DecodeBytes(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &tooBig):
			return domain.Invalidf("body larger than %d bytes", MaxBody)
		case errors.Is(err, io.EOF):
			return domain.Invalidf("body must be a JSON object")
		case errors.As(err, &typeErr):
			return domain.Invalidf("field %q has the wrong type", typeErr.Field)
		case errors.As(err, &syntaxErr):
			return domain.Invalidf("malformed JSON at byte %d", syntaxErr.Offset)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return domain.Invalidf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return domain.Invalidf("malformed JSON body")
	}
	if dec.More() {
		return domain.Invalidf("body must hold exactly one JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return domain.Invalidf("body larger than %d bytes", MaxBody)
		}
		return domain.Invalidf("body must hold exactly one JSON object")
	}
	return nil
}

// JSON writes v with status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Transport-level refusals, mapped like the domain's errors.
var (
	ErrMethodNotAllowed = errors.New("method not allowed")
	ErrUnsupportedMedia = errors.New("unsupported media type")
)

// statuses maps errors to the contract's status, code and public message,
// first match wins. It is the one place where an error becomes an answer.
var statuses = []struct {
	err     error
	status  int
	code    string
	message string
}{
	{domain.ErrUnauthenticated, http.StatusUnauthorized, "UNAUTHENTICATED", "missing or invalid credentials"},
	{domain.ErrForbidden, http.StatusForbidden, "PERMISSION_DENIED", "this caller may not use this endpoint"},
	{ErrMethodNotAllowed, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "method not allowed"},
	{ErrUnsupportedMedia, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", "unsupported media type"},
	{domain.ErrUnprocessable, http.StatusUnprocessableEntity, "UNPROCESSABLE", "the request refers to something that does not exist"},
	{domain.ErrUnknownItem, http.StatusNotFound, "ITEM_NOT_FOUND", "unknown item"},
	{domain.ErrNotFound, http.StatusNotFound, "NOT_FOUND", "not found"},
	{domain.ErrInsufficientStock, http.StatusConflict, "INSUFFICIENT_STOCK", "insufficient stock"},
	{domain.ErrOrderPaid, http.StatusConflict, "ORDER_PAID", "the order is paid"},
	{domain.ErrPurchaseLimit, http.StatusConflict, "PURCHASE_LIMIT", "this order would take you past the item's limit per shopper (units in your unpaid and paid orders)"},
	{domain.ErrTooManyUnpaid, http.StatusConflict, "TOO_MANY_UNPAID_ORDERS", "you hold the most unpaid orders allowed; pay or cancel one first"},
	{domain.ErrCartFull, http.StatusConflict, "CART_FULL", fmt.Sprintf("the cart holds at most %d lines; remove one first", domain.MaxLinesPerOrder)},
	{domain.ErrOrderClosed, http.StatusConflict, "ORDER_CLOSED", "the order is closed"},
	{domain.ErrCreateInProgress, http.StatusConflict, "CREATE_IN_PROGRESS", "an order with this Idempotency-Key is still being created; retry shortly"},
	{domain.ErrIdempotencyMismatch, http.StatusUnprocessableEntity, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used with a different request"},
	{domain.ErrInsufficientBalance, http.StatusPaymentRequired, "INSUFFICIENT_BALANCE", "insufficient balance"},
	{domain.ErrUnavailable, http.StatusServiceUnavailable, "UNAVAILABLE", "a dependency is unavailable; try again"},
}

// Status maps an error to its HTTP status and contract error code.
func Status(err error) (int, string) {
	status, body := Body(err)
	return status, body.Error.Code
}

// Body is the status and the contract's error body for err. Only the
// messages of *domain.InvalidError reach the caller; everything else gets a
// fixed text per code, never an internal error's.
func Body(err error) (int, ErrorBody) {
	var inv *domain.InvalidError
	if errors.As(err, &inv) {
		return http.StatusBadRequest, ErrorBody{Error: ErrorDetail{Code: "INVALID_ARGUMENT", Message: inv.Msg}}
	}
	for _, s := range statuses {
		if errors.Is(err, s.err) {
			return s.status, ErrorBody{Error: ErrorDetail{Code: s.code, Message: s.message}}
		}
	}
	return http.StatusInternalServerError, ErrorBody{Error: ErrorDetail{Code: "INTERNAL", Message: "internal error"}}
}

// Error writes the contract's error body for err and logs the detail once.
func Error(w http.ResponseWriter, r *http.Request, err error, attrs ...any) {
	status, body := Body(err)
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	logging.From(r.Context()).Log(r.Context(), level, "request failed",
		append(attrs, "status", status, "code", body.Error.Code, "error", err.Error(), "method", r.Method, "path", r.URL.Path)...)
	JSON(w, status, body)
}

// NotFound answers 404 with the contract's body.
func NotFound(w http.ResponseWriter, r *http.Request) {
	Error(w, r, fmt.Errorf("no route %s %s: %w", r.Method, r.URL.Path, domain.ErrNotFound))
}

// NewMux returns a router for a function's routes, declared as
// http.ServeMux patterns ("POST /{orderId}/cancel"); every request no
// route takes (another method, another path) answers the contract's 405
// body, where ServeMux would answer plain text.
func NewMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/", MethodNotAllowed)
	return mux
}

// MethodNotAllowed answers 405 with the contract's body.
func MethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	Error(w, r, fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, ErrMethodNotAllowed))
}

// PathID returns the single path segment after prefix ("/" + id), checked
// with domain.CheckID, or "" for the bare prefix.
func PathID(r *http.Request, field string) (string, bool, error) {
	p := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	if p == "" {
		return "", false, nil
	}
	if strings.Contains(p, "/") || strings.Contains(p, "%") {
		return "", true, domain.Invalidf("%s must not contain '/' or escapes", field)
	}
	return p, true, domain.CheckID(field, p)
}

// UserFunc serves a shopper's request for user uid: the status and the
// value to answer as JSON, or an error for the one mapper.
type UserFunc func(r *http.Request, uid string) (int, any, error)

// AsUser is the frame of a shopper's route: it authenticates the caller
// (auth.User), runs fn, and answers.
func AsUser(users auth.Users, fn UserFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		uid, err := auth.User(r.Context(), users, r)
		if err == nil {
			var status int
			var v any
			if status, v, err = fn(r, uid); err == nil {
				JSON(w, status, v)
				return
			}
		}
		Error(w, r, err)
	}
}

// Query returns r's query parameters: each one of allowed, each given at
// most once; anything else is a *domain.InvalidError.
func Query(r *http.Request, allowed ...string) (map[string]string, error) {
	out := map[string]string{}
	for name, vs := range r.URL.Query() {
		if !slices.Contains(allowed, name) {
			return nil, domain.Invalidf("unknown query parameter %q (%s)", name, strings.Join(allowed, ", "))
		}
		if len(vs) != 1 {
			return nil, domain.Invalidf("query parameter %q given %d times", name, len(vs))
		}
		out[name] = vs[0]
	}
	return out, nil
}

// DecodeBody is Decode for a handler that has no ResponseWriter at hand.
func DecodeBody(r *http.Request, v any) error { return Decode(nil, r, v) }

// Checker checks who calls (auth.Internal).
type Checker interface {
	Check(r *http.Request) error
}

// Bind is the prologue of a JSON route: check the caller (when check is
// not nil), decode the body strictly into v, then validate it (when
// validate is not nil). On any failure it writes the error answer and
// returns false.
func Bind(w http.ResponseWriter, r *http.Request, check Checker, v any, validate func() error) bool {
	if check != nil {
		if err := check.Check(r); err != nil {
			Error(w, r, err)
			return false
		}
	}
	if err := Decode(w, r, v); err != nil {
		Error(w, r, err)
		return false
	}
	if validate != nil {
		if err := validate(); err != nil {
			Error(w, r, err)
			return false
		}
	}
	return true
}
