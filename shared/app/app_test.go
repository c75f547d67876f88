package app

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// The first request of an instance builds its clients; a shopper who hung
// up on it must not leave the instance with clients bound to a dead
// context, nor with a cached failure. Against the real emulator: the build
// runs although its request's context had already ended, the Firestore
// client it made serves the next requests, and a failed build is retried.
func TestLazyBuildOutlivesItsRequest(t *testing.T) {
	testenv.FirestoreHost(t)
	project := testenv.ProjectID(t)
	seedStore := testenv.StoreOn(t, project)
	if err := seedStore.PutItem(context.Background(), domain.Item{ID: "i1", Name: "Mug", PriceCents: 1, Stock: 7}); err != nil {
		t.Fatal(err)
	}
	builds := 0
	h := Lazy(func(ctx context.Context) (http.Handler, error) {
		builds++
		if ctx.Err() != nil {
			t.Errorf("the build got a context that had already ended: %v", ctx.Err())
		}
		if builds == 1 {
			return nil, errors.New("first build fails")
		}
		s, err := store.New(ctx, project)
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { _ = s.Close() })
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := s.Item(r.Context(), "i1"); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusOK)
		}), nil
	})
	serve := func(ctx context.Context) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx))
		return rec.Code
	}
	if code := serve(context.Background()); code != http.StatusServiceUnavailable {
		t.Fatalf("failed build answered %d, want 503", code)
	}
	gone, cancel := context.WithCancel(context.Background())
	cancel() // the shopper hung up before the instance was built
	serve(gone)
	if builds != 2 {
		t.Fatalf("%d builds, want the failed one retried once", builds)
	}
	for i := range 3 {
		if code := serve(context.Background()); code != http.StatusOK {
			t.Fatalf("request %d after the build answered %d: the client did not outlive the request that built it", i, code)
		}
	}
	if builds != 2 {
		t.Fatalf("%d builds: a successful build was not kept", builds)
	}
}
