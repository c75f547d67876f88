// Package logging sets up log/slog JSON on stdout with Cloud Logging's keys
// (severity, message, logging.googleapis.com/trace). The relay and every
// function use it.
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
)

// KeyOrderID is carried by every line about an order.
const KeyOrderID = "order_id"

// New returns a JSON logger writing to w with Cloud Logging's field names.
func New(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.MessageKey:
				a.Key = "message"
			case slog.LevelKey:
				a.Key = "severity"
				if l, ok := a.Value.Any().(slog.Level); ok {
					a.Value = slog.StringValue(severity(l))
				}
			case slog.TimeKey:
				a.Key = "time"
			}
			return a
		},
	}))
}

func severity(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}

// ForLevel builds the process logger for a level name (debug, info, warn,
// error; anything else is info).
func ForLevel(name string) *slog.Logger {
	level := slog.LevelInfo
	switch strings.ToLower(name) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	return New(os.Stdout, level)
}

type ctxKey struct{}

// With stores a logger in ctx.
func With(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, ctxKey{}, l)
}

// From returns the logger stored in ctx, or slog.Default().
func From(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(ctxKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

// TraceAttr returns the Cloud Logging trace attribute for a W3C traceparent
// or X-Cloud-Trace-Context value and a project, or an empty attr.
func TraceAttr(project, header string) slog.Attr {
	id := ""
	if parts := strings.Split(header, "-"); len(parts) == 4 && len(parts[1]) == 32 {
		id = parts[1]
	} else if i := strings.IndexByte(header, '/'); i > 0 {
		id = header[:i]
	}
	if id == "" || project == "" {
		return slog.Attr{}
	}
	return slog.String("logging.googleapis.com/trace", "projects/"+project+"/traces/"+id)
}
