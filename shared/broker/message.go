package broker

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Message is one delayed message.
type Message struct {
	ID        string // stable; becomes the CloudEvent id, so receivers can dedupe
	Type      string // CloudEvent type
	Subject   string // order id
	Data      []byte // JSON
	DueAt     time.Time
	CreatedAt time.Time
	Attempt   int
	Trace     string    // W3C traceparent, optional
	Reason    string    // dead-letter reason, optional
	DeadAt    time.Time // when it was dead-lettered (its AMQP timestamp), on the dead-letter queue only
}

// ErrNotConfirmed means the broker did not confirm a publish (nacked, or the
// connection failed before the confirm arrived): the message may be lost.
var ErrNotConfirmed = errors.New("publish not confirmed by the broker")

// ErrNacked, beside ErrNotConfirmed, means the broker answered the publish
// with a nack: it could not take the message now (a quorum queue electing
// a leader after a node loss, or over a length limit).
var ErrNacked = errors.New("nacked")

// HeaderMeta holds everything the relay needs of a message but its id and
// body, as one string of space-separated key=value fields:
//
//	due=1764145000123 attempt=2 created=1764144000000 type=orders.timeout.due.v1 subject=o-1 trace=00-…
//
// due and created are unix milliseconds (due rounded up, so a timer never
// fires early); attempt, created and trace are left out when unset; in
// values, '%', ' ' and control characters are %XX-escaped. One header
// instead of one per field: the AMQP client decodes every table entry with
// several small allocations, and this was a sixth of the relay's CPU per
// message. Unknown keys are ignored.
const HeaderMeta = "x-ot"

// Legacy headers: what messages published before HeaderMeta carry (a timer
// may wait in a tier for up to a year, so FromDelivery still reads them).
const (
	HeaderDueAt     = "x-due-at"     // int64 unix milliseconds
	HeaderAttempt   = "x-attempt"    // int32 delivery attempts so far
	HeaderType      = "ce-type"      // CloudEvent type
	HeaderSubject   = "ce-subject"   // order id
	HeaderTrace     = "traceparent"  // W3C trace context
	HeaderFirstSeen = "x-created-at" // int64 unix ms when first published
)

// HeaderReason says why a message was dead-lettered (on ot.dead only).
const HeaderReason = "x-dead-reason"

// Publishing builds the AMQP publishing for m: its id, persistent, the
// HeaderMeta header (and HeaderReason when set), the body.
func (m Message) Publishing() amqp.Publishing {
	h := amqp.Table{HeaderMeta: m.meta()}
	if m.Reason != "" {
		h[HeaderReason] = m.Reason
	}
	return amqp.Publishing{
		Headers:      h,
		DeliveryMode: amqp.Persistent,
		MessageId:    m.ID,
		Body:         m.Data,
	}
}

func (m Message) meta() string {
	b := make([]byte, 0, 96+len(m.Type)+len(m.Subject)+len(m.Trace))
	b = append(b, "due="...)
	b = strconv.AppendInt(b, ceilMilli(m.DueAt), 10)
	if m.Attempt != 0 {
		b = append(b, " attempt="...)
		b = strconv.AppendInt(b, int64(m.Attempt), 10)
	}
	if !m.CreatedAt.IsZero() {
		b = append(b, " created="...)
		b = strconv.AppendInt(b, m.CreatedAt.UnixMilli(), 10)
	}
	b = appendField(b, "type", m.Type)
	b = appendField(b, "subject", m.Subject)
	if m.Trace != "" {
		b = appendField(b, "trace", m.Trace)
	}
	return string(b)
}

func appendField(b []byte, key, v string) []byte {
	b = append(b, ' ')
	b = append(b, key...)
	b = append(b, '=')
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c == '%' || c == 0x7f {
			b = append(b, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
		} else {
			b = append(b, c)
		}
	}
	return b
}

// FromDelivery reads a message back from a delivery.
func FromDelivery(d amqp.Delivery) (Message, error) {
	m := Message{ID: d.MessageId, Data: d.Body}
	m.Reason, _ = d.Headers[HeaderReason].(string)
	if m.Reason != "" && !d.Timestamp.IsZero() {
		m.DeadAt = d.Timestamp.UTC()
	}
	if m.Reason == "" {
		m.Reason, m.DeadAt = brokerDeath(d.Headers)
	}
	if meta, ok := d.Headers[HeaderMeta].(string); ok {
		if err := m.parseMeta(meta); err != nil {
			return m, fmt.Errorf("header %s: %w", HeaderMeta, err)
		}
	} else if err := m.legacy(d.Headers); err != nil {
		return m, err
	}
	if m.ID == "" || m.Type == "" {
		return m, errors.New("message id or type missing")
	}
	return m, nil
}

func (m *Message) parseMeta(s string) error {
	due := false
	for s != "" {
		var f string
		f, s, _ = strings.Cut(s, " ")
		key, v, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("field %q has no '='", f)
		}
		if strings.IndexByte(v, '%') >= 0 {
			u, err := url.PathUnescape(v)
			if err != nil {
				return fmt.Errorf("field %s: %w", key, err)
			}
			v = u
		}
		switch key {
		case "due", "created", "attempt":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("field %s: %w", key, err)
			}
			switch key {
			case "due":
				m.DueAt, due = time.UnixMilli(n).UTC(), true
			case "created":
				m.CreatedAt = time.UnixMilli(n).UTC()
			default:
				m.Attempt = int(n)
			}
		case "type":
			m.Type = v
		case "subject":
			m.Subject = v
		case "trace":
			m.Trace = v
		}
	}
	if !due {
		return errors.New("no due time")
	}
	return nil
}

// legacy reads the one-header-per-field format.
func (m *Message) legacy(h amqp.Table) error {
	due, ok := toInt64(h[HeaderDueAt])
	if !ok {
		return fmt.Errorf("neither %s nor %s (integer) is set", HeaderMeta, HeaderDueAt)
	}
	m.DueAt = time.UnixMilli(due).UTC()
	if a, ok := toInt64(h[HeaderAttempt]); ok {
		m.Attempt = int(a)
	}
	if c, ok := toInt64(h[HeaderFirstSeen]); ok {
		m.CreatedAt = time.UnixMilli(c).UTC()
	}
	m.Type, _ = h[HeaderType].(string)
	m.Subject, _ = h[HeaderSubject].(string)
	m.Trace, _ = h[HeaderTrace].(string)
	return nil
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case int:
		return int64(x), true
	case int16:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	}
	return 0, false
}

// ceilMilli rounds up to the millisecond, so a due time read back from the
// header is never before the real one (a timer must never fire early).
func ceilMilli(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return ms
}

// brokerDeath reads why and when the broker itself dead-lettered a message
// (its x-death header: over the delivery limit, say), or "". A TTL expiry
// is not a death here: it is how a timer moves down the ladder's tiers,
// and every live message carries one.
func brokerDeath(h amqp.Table) (string, time.Time) {
	deaths, ok := h["x-death"].([]any)
	if !ok || len(deaths) == 0 {
		return "", time.Time{}
	}
	d, ok := deaths[0].(amqp.Table)
	if !ok {
		return "", time.Time{}
	}
	reason, _ := d["reason"].(string)
	if reason == "expired" {
		return "", time.Time{}
	}
	queue, _ := d["queue"].(string)
	at, _ := d["time"].(time.Time)
	return fmt.Sprintf("broker: %s in %s", reason, queue), at.UTC()
}
