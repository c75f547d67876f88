package events

import (
	"errors"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// FuzzParseTimeout: event data either parses to a valid order id and a
// deadline, or fails with an InvalidError (the function answers 4xx).
func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{
		`{"orderId":"o1","deadline":"2026-01-02T03:04:05Z"}`,
		`{"orderId":"o1","deadline":"2026-01-02T03:04:05.123456789Z"}`,
		`{"orderId":"a/b","deadline":"2026-01-02T03:04:05Z"}`,
		`{"orderId":"o1"}`, `{"deadline":1}`, `[]`, `nope`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		id, deadline, err := ParseTimeout(data)
		if err != nil {
			var inv *domain.InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("error %v is not an InvalidError", err)
			}
			return
		}
		if !domain.ValidID(id) || deadline.IsZero() || deadline.Location() != time.UTC {
			t.Fatalf("accepted %q %v", id, deadline)
		}
	})
}

func TestTimeoutRoundTrip(t *testing.T) {
	d := time.Date(2026, 5, 6, 7, 8, 9, 123456000, time.UTC)
	m := Timeout("o1", d, d.Add(-time.Minute), "")
	id, got, err := ParseTimeout(m.Data)
	if err != nil || id != "o1" || !got.Equal(d) || !m.DueAt.Equal(d) {
		t.Fatalf("%q %v %v", id, got, err)
	}
	if m.ID != Timeout("o1", d, d, "").ID {
		t.Fatal("timer id is not stable per (order, deadline)")
	}
}
