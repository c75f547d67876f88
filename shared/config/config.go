// Package config loads the settings of a function or the relay from the
// environment, once, at cold start. A missing or malformed setting is an
// error that names the variable.
package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/broker"
)

// Environment variable names. terraform/ sets each one the code reads.
const (
	EnvProject            = "FIRESTORE_PROJECT_ID"
	EnvAuthMode           = "AUTH_MODE"
	EnvAuthSecret         = "AUTH_HS256_SECRET"
	EnvAuthProject        = "AUTH_FIREBASE_PROJECT"
	EnvInternalMode       = "INTERNAL_AUTH_MODE"
	EnvInternalSecret     = "INTERNAL_SHARED_SECRET"
	EnvInternalCallers    = "INTERNAL_ALLOWED_CALLERS"
	EnvInternalAudience   = "INTERNAL_AUDIENCE"
	EnvDeductStockURL     = "DEDUCTSTOCK_URL"
	EnvClearCartURL       = "CLEARCART_URL"
	EnvPayURL             = "PAY_URL"
	EnvAMQPURL            = "AMQP_URL"
	EnvBrokerMode         = "BROKER_MODE"
	EnvBrokerPrefix       = "BROKER_PREFIX"
	EnvTimeoutDefault     = "PAYMENT_TIMEOUT_DEFAULT"
	EnvTimeoutMin         = "PAYMENT_TIMEOUT_MIN"
	EnvTimeoutMax         = "PAYMENT_TIMEOUT_MAX"
	EnvCallTimeout        = "CALL_TIMEOUT"
	EnvCheckLadder        = "CHECK_LADDER"
	EnvSweepGrace         = "SWEEP_GRACE"
	EnvSweepSagaBudget    = "SWEEP_SAGA_BUDGET"
	EnvMaxUnpaid          = "MAX_UNPAID_ORDERS_PER_SHOPPER"
	EnvEventsTopic        = "EVENTS_TOPIC"
	EnvEventsProject      = "PUBSUB_PROJECT_ID"
	EnvRemindBefore       = "REMIND_BEFORE"
	EnvOrderRetention     = "ORDER_RETENTION"
	EnvLogLevel           = "LOG_LEVEL"
	EnvTraceExporter      = "TRACE_EXPORTER"
	EnvRelayTarget        = "RELAY_TARGET_URL"
	EnvRelayConcurrency   = "RELAY_CONCURRENCY"
	EnvRelayPrefetch      = "RELAY_PREFETCH"
	EnvRelayMaxAttempts   = "RELAY_MAX_ATTEMPTS"
	EnvRelayImmediate     = "RELAY_IMMEDIATE_RETRIES"
	EnvRelayBackoffBase   = "RELAY_BACKOFF_BASE"
	EnvRelayBackoffMax    = "RELAY_BACKOFF_MAX"
	EnvRelayHTTPTimeout   = "RELAY_HTTP_TIMEOUT"
	EnvRelayDrainDeadline = "RELAY_DRAIN_TIMEOUT"
	EnvPort               = "PORT"
)

// Auth modes.
const (
	AuthHS256      = "hs256"    // local/test: HS256 tokens signed with AUTH_HS256_SECRET
	AuthFirebase   = "firebase" // production: Firebase Auth / Identity Platform ID tokens
	InternalSecret = "shared-secret"
	InternalGoogle = "google"
)

// Config is every setting; each program uses the part it needs.
type Config struct {
	Project       string
	LogLevel      string
	TraceExporter string // none, stdout or gcp

	AuthMode       string
	AuthSecret     string
	AuthProject    string
	InternalMode   string
	InternalSecret string
	// InternalCallers are the service-account emails allowed to call
	// internal routes in google mode.
	InternalCallers []string
	// InternalAudiences are this function's own URLs: in google mode an
	// internal caller's ID token must be minted for one of them.
	InternalAudiences []string

	DeductStockURL string
	ClearCartURL   string
	PayURL         string

	AMQPURL      string
	BrokerMode   string
	BrokerPrefix string

	TimeoutDefault time.Duration
	TimeoutMin     time.Duration
	TimeoutMax     time.Duration
	CallTimeout    time.Duration
	// CheckLadder are offsets after creation at which an UNPAID order's
	// payment is checked early (empty: off).
	CheckLadder []time.Duration

	SweepGrace      time.Duration
	SweepSagaBudget time.Duration
	// MaxUnpaidPerShopper caps a shopper's UNPAID orders (0: no cap).
	MaxUnpaidPerShopper int

	// EventsTopic is the order events' Pub/Sub topic ("none": events off),
	// in EventsProject.
	EventsTopic   string
	EventsProject string
	// RemindBefore: an orders.deadline.approaching.v1 event this long
	// before an UNPAID order's deadline (0: off).
	RemindBefore time.Duration
	// OrderRetention: how long a decided order is kept (its expireAt,
	// for Firestore's TTL policy; 0: forever).
	OrderRetention time.Duration
}

// Defaults of the order settings.
const (
	DefaultMaxUnpaid      = 10             // MAX_UNPAID_ORDERS_PER_SHOPPER
	DefaultEventsTopic    = "order-events" // EVENTS_TOPIC
	DefaultOrderRetention = 90 * 24 * time.Hour
	// EventsOff as EVENTS_TOPIC turns order events off.
	EventsOff = "none"
)

// FunctionVars is every variable a function reads (Load reads exactly
// these; a test holds it to that, and another compares it with terraform).
var FunctionVars = []string{
	EnvProject, EnvAuthMode, EnvAuthSecret, EnvAuthProject, EnvInternalMode, EnvInternalSecret, EnvInternalCallers,
	EnvInternalAudience, EnvDeductStockURL, EnvClearCartURL, EnvPayURL, EnvAMQPURL, EnvBrokerMode, EnvBrokerPrefix,
	EnvTimeoutDefault, EnvTimeoutMin, EnvTimeoutMax, EnvCallTimeout, EnvCheckLadder, EnvSweepGrace, EnvSweepSagaBudget,
	EnvLogLevel, EnvTraceExporter, EnvMaxUnpaid, EnvEventsTopic, EnvEventsProject, EnvRemindBefore, EnvOrderRetention,
}

// Lookup reads one variable; os.LookupEnv in production.
type Lookup func(name string) (string, bool)

// Load reads the environment. need names the variables that must be set for
// the caller (beyond those with defaults).
func Load(need ...string) (Config, error) { return LoadFrom(os.LookupEnv, need...) }

// env reads variables through lookup and collects what is malformed; both
// loaders read through it.
type env struct {
	lookup Lookup
	errs   []error
}

func (e *env) str(name, def string) string {
	if v, ok := e.lookup(name); ok && v != "" {
		return v
	}
	return def
}

// dur reads a Go duration ("90s") or plain seconds ("900"); zero is
// allowed only with zeroOK.
func (e *env) dur(name string, def time.Duration, zeroOK bool) time.Duration {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	d, err := parseDuration(v)
	if err != nil || d < 0 || (d == 0 && !zeroOK) {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want a duration such as 500ms, 30s, 15m or 900 (seconds)", name, v))
	}
	return d
}

func (e *env) num(name string, def int) int {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want a non-negative integer", name, v))
	}
	return n
}

// list reads a comma-separated list, trimmed, without empty entries.
func (e *env) list(name string) []string {
	var out []string
	for _, s := range strings.Split(e.str(name, ""), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// LoadFrom is Load with another source of variables.
func LoadFrom(lookup Lookup, need ...string) (Config, error) {
	e := &env{lookup: lookup}
	str := e.str
	dur := func(name string, def time.Duration) time.Duration { return e.dur(name, def, true) }
	c := Config{
		Project:         str(EnvProject, ""),
		LogLevel:        str(EnvLogLevel, "info"),
		TraceExporter:   str(EnvTraceExporter, "none"),
		AuthMode:        str(EnvAuthMode, AuthHS256),
		AuthSecret:      str(EnvAuthSecret, ""),
		AuthProject:     str(EnvAuthProject, ""),
		InternalMode:    str(EnvInternalMode, InternalSecret),
		InternalSecret:  str(EnvInternalSecret, ""),
		DeductStockURL:  strings.TrimRight(str(EnvDeductStockURL, ""), "/"),
		ClearCartURL:    strings.TrimRight(str(EnvClearCartURL, ""), "/"),
		PayURL:          strings.TrimRight(str(EnvPayURL, ""), "/"),
		AMQPURL:         str(EnvAMQPURL, ""),
		BrokerMode:      str(EnvBrokerMode, "ladder"),
		BrokerPrefix:    str(EnvBrokerPrefix, "ot"),
		TimeoutDefault:  dur(EnvTimeoutDefault, 15*time.Minute),
		TimeoutMin:      dur(EnvTimeoutMin, time.Second),
		TimeoutMax:      dur(EnvTimeoutMax, 30*24*time.Hour),
		CallTimeout:     dur(EnvCallTimeout, 10*time.Second),
		SweepGrace:      dur(EnvSweepGrace, time.Minute),
		SweepSagaBudget: dur(EnvSweepSagaBudget, 2*time.Minute),
	}
	c.MaxUnpaidPerShopper = e.num(EnvMaxUnpaid, DefaultMaxUnpaid)
	c.EventsTopic = str(EnvEventsTopic, DefaultEventsTopic)
	c.EventsProject = str(EnvEventsProject, c.Project)
	c.RemindBefore = dur(EnvRemindBefore, 0)
	c.OrderRetention = dur(EnvOrderRetention, DefaultOrderRetention)
	c.InternalCallers = e.list(EnvInternalCallers)
	for _, s := range e.list(EnvInternalAudience) {
		c.InternalAudiences = append(c.InternalAudiences, strings.TrimRight(s, "/"))
	}
	for _, s := range e.list(EnvCheckLadder) {
		d, err := parseDuration(s)
		if err != nil || d <= 0 {
			e.errs = append(e.errs, fmt.Errorf("%s: %q is not a positive duration", EnvCheckLadder, s))
			continue
		}
		c.CheckLadder = append(c.CheckLadder, d)
	}
	errs := e.errs
	switch c.AuthMode {
	case AuthHS256:
		if len(c.AuthSecret) < 16 && contains(need, EnvAuthSecret) {
			errs = append(errs, fmt.Errorf("%s must be at least 16 bytes in %s mode", EnvAuthSecret, AuthHS256))
		}
	case AuthFirebase:
		if c.AuthProject == "" {
			c.AuthProject = c.Project
		}
	default:
		errs = append(errs, fmt.Errorf("%s=%q: want %s or %s", EnvAuthMode, c.AuthMode, AuthHS256, AuthFirebase))
	}
	switch c.InternalMode {
	case InternalSecret:
		if len(c.InternalSecret) < 16 && contains(need, EnvInternalSecret) {
			errs = append(errs, fmt.Errorf("%s must be at least 16 bytes in %s mode", EnvInternalSecret, InternalSecret))
		}
	case InternalGoogle:
		if len(c.InternalAudiences) == 0 {
			errs = append(errs, fmt.Errorf("%s is required in %s mode: this function's own URL, the audience its callers' ID tokens must carry", EnvInternalAudience, InternalGoogle))
		}
	default:
		errs = append(errs, fmt.Errorf("%s=%q: want %s or %s", EnvInternalMode, c.InternalMode, InternalSecret, InternalGoogle))
	}
	if !validExporter(c.TraceExporter) {
		errs = append(errs, fmt.Errorf("%s=%q: want none, stdout or gcp", EnvTraceExporter, c.TraceExporter))
	}
	if c.AMQPURL != "" {
		if err := broker.CheckURLs(c.AMQPURL); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvAMQPURL, err))
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("%s=%q: want debug, info, warn or error", EnvLogLevel, c.LogLevel))
	}
	if err := checkBrokerMode(c.BrokerMode); err != nil {
		errs = append(errs, err)
	}
	if c.TimeoutMin <= 0 || c.TimeoutMin > c.TimeoutMax || c.TimeoutDefault < c.TimeoutMin || c.TimeoutDefault > c.TimeoutMax {
		errs = append(errs, fmt.Errorf("payment timeouts: want 0 < %s <= %s <= %s", EnvTimeoutMin, EnvTimeoutDefault, EnvTimeoutMax))
	}
	for _, name := range need {
		if name == EnvAuthSecret || name == EnvInternalSecret {
			continue // checked above, only in the mode that uses them
		}
		if str(name, "") == "" {
			errs = append(errs, fmt.Errorf("%s is required", name))
		}
	}
	return c, errors.Join(errs...)
}

// parseDuration accepts Go durations ("90s", "15m") and plain seconds ("900").
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(s)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// RelayVars is every variable the relay reads (Cloud Run sets PORT).
var RelayVars = []string{
	EnvAMQPURL, EnvBrokerMode, EnvBrokerPrefix, EnvInternalMode, EnvInternalSecret, EnvLogLevel, EnvTraceExporter,
	EnvRelayTarget, EnvRelayConcurrency, EnvRelayPrefetch, EnvRelayMaxAttempts, EnvRelayImmediate,
	EnvRelayBackoffBase, EnvRelayBackoffMax, EnvRelayHTTPTimeout, EnvRelayDrainDeadline, EnvPort,
}

// Relay is the relay's configuration.
type Relay struct {
	AMQPURL        string
	BrokerMode     string
	BrokerPrefix   string
	InternalMode   string
	InternalSecret string
	LogLevel       string
	TraceExporter  string
	Target         string
	Concurrency    int
	Prefetch       int
	MaxAttempts    int
	Immediate      int // retries after a short pause, before the backoff
	BackoffBase    time.Duration
	BackoffMax     time.Duration
	HTTPTimeout    time.Duration
	Drain          time.Duration
	Port           string
}

// LoadRelay reads the relay's variables.
func LoadRelay(lookup Lookup) (Relay, error) {
	e := &env{lookup: lookup}
	str, num := e.str, e.num
	dur := func(name string, def time.Duration) time.Duration { return e.dur(name, def, false) }
	r := Relay{
		AMQPURL:        str(EnvAMQPURL, ""),
		BrokerMode:     str(EnvBrokerMode, "ladder"),
		BrokerPrefix:   str(EnvBrokerPrefix, "ot"),
		InternalMode:   str(EnvInternalMode, InternalSecret),
		InternalSecret: str(EnvInternalSecret, ""),
		LogLevel:       str(EnvLogLevel, "info"),
		TraceExporter:  str(EnvTraceExporter, "none"),
		Target:         str(EnvRelayTarget, ""),
		Concurrency:    num(EnvRelayConcurrency, 64),
		Prefetch:       num(EnvRelayPrefetch, 0),
		MaxAttempts:    num(EnvRelayMaxAttempts, 20),
		Immediate:      num(EnvRelayImmediate, 1),
		BackoffBase:    dur(EnvRelayBackoffBase, time.Second),
		BackoffMax:     dur(EnvRelayBackoffMax, 5*time.Minute),
		HTTPTimeout:    dur(EnvRelayHTTPTimeout, 30*time.Second),
		Drain:          dur(EnvRelayDrainDeadline, 20*time.Second),
		Port:           str(EnvPort, "8080"),
	}
	errs := e.errs
	if !validExporter(r.TraceExporter) {
		errs = append(errs, fmt.Errorf("%s=%q: want none, stdout or gcp", EnvTraceExporter, r.TraceExporter))
	}
	if r.AMQPURL == "" {
		errs = append(errs, fmt.Errorf("%s is required", EnvAMQPURL))
	} else if err := broker.CheckURLs(r.AMQPURL); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvAMQPURL, err))
	}
	if r.Target == "" {
		errs = append(errs, fmt.Errorf("%s is required", EnvRelayTarget))
	}
	switch r.InternalMode {
	case InternalSecret:
		if len(r.InternalSecret) < 16 {
			errs = append(errs, fmt.Errorf("%s must be at least 16 bytes in %s mode", EnvInternalSecret, InternalSecret))
		}
	case InternalGoogle:
	default:
		errs = append(errs, fmt.Errorf("%s=%q: want %s or %s", EnvInternalMode, r.InternalMode, InternalSecret, InternalGoogle))
	}
	if err := checkBrokerMode(r.BrokerMode); err != nil {
		errs = append(errs, err)
	}
	return r, errors.Join(errs...)
}

func validExporter(s string) bool { return s == "none" || s == "stdout" || s == "gcp" }

// checkBrokerMode accepts the broker modes the functions and the relay
// share (broker.ModeLadder, ModeNative, ModePlugin).
func checkBrokerMode(mode string) error {
	switch mode {
	case "ladder", "native", "plugin":
		return nil
	}
	return fmt.Errorf("%s=%q: want ladder, native (RabbitMQ 4.4+) or plugin", EnvBrokerMode, mode)
}
