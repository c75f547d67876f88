package store

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ordertimeout/ordertimeout/shared/telemetry"
)

// Usage is the Firestore work one store operation (an exported Store
// method, such as Reserve or UpdateOrder) asked for, counted the way
// Firestore bills it: a read per document a get or query returned (a
// query that returned none is billed one), a write per document written
// by a commit that succeeded, a delete per document deleted. Transactions
// cost nothing themselves; Attempts and Aborted show what contention
// added (an aborted attempt's reads are billed, its writes are not).
type Usage struct {
	Reads, Writes, Deletes int64
	// Transactions: read-write transactions run; Attempts: their tries
	// (Attempts − Transactions were retries); Aborted: commits the
	// backend refused with ABORTED.
	Transactions, Attempts, Aborted int64
}

// Add returns u + v.
func (u Usage) Add(v Usage) Usage {
	return Usage{u.Reads + v.Reads, u.Writes + v.Writes, u.Deletes + v.Deletes,
		u.Transactions + v.Transactions, u.Attempts + v.Attempts, u.Aborted + v.Aborted}
}

// Sub returns u − v (the work between two readings).
func (u Usage) Sub(v Usage) Usage {
	return Usage{u.Reads - v.Reads, u.Writes - v.Writes, u.Deletes - v.Deletes,
		u.Transactions - v.Transactions, u.Attempts - v.Attempts, u.Aborted - v.Aborted}
}

// opUsage is one operation's counts.
type opUsage struct{ reads, writes, deletes, txs, attempts, aborted atomic.Int64 }

func (o *opUsage) load() Usage {
	return Usage{o.reads.Load(), o.writes.Load(), o.deletes.Load(), o.txs.Load(), o.attempts.Load(), o.aborted.Load()}
}

// meter counts each operation's usage in memory (Store.Usage) and as the
// OpenTelemetry counters firestore.{reads,writes,deletes,transactions,
// attempts,aborted}, attribute op, which Cloud Monitoring and `make load`
// read.
type meter struct {
	ops      sync.Map // op name → *opUsage
	names    sync.Map // caller pc → op name
	counters [6]metric.Int64Counter
	conn     *grpc.ClientConn // the emulator connection the store dialed, else nil
}

var usageInstruments = [6]struct{ name, desc string }{
	{"firestore.reads", "Firestore documents read (billed reads), by store operation."},
	{"firestore.writes", "Firestore documents written by commits that succeeded, by store operation."},
	{"firestore.deletes", "Firestore documents deleted, by store operation."},
	{"firestore.transactions", "Read-write transactions run, by store operation."},
	{"firestore.attempts", "Read-write transaction attempts (retries included), by store operation."},
	{"firestore.aborted", "Commits the backend refused with ABORTED (contention), by store operation."},
}

func newMeter() *meter {
	m := &meter{}
	mt := otel.Meter(telemetry.Name)
	for i, in := range usageInstruments {
		m.counters[i], _ = mt.Int64Counter(in.name, metric.WithDescription(in.desc))
	}
	return m
}

const (
	kReads = iota
	kWrites
	kDeletes
	kTransactions
	kAttempts
	kAborted
)

func (m *meter) add(ctx context.Context, op string, kind int, n int64) {
	if n == 0 {
		return
	}
	v, ok := m.ops.Load(op)
	if !ok {
		v, _ = m.ops.LoadOrStore(op, &opUsage{})
	}
	o := v.(*opUsage)
	[6]*atomic.Int64{&o.reads, &o.writes, &o.deletes, &o.txs, &o.attempts, &o.aborted}[kind].Add(n)
	m.counters[kind].Add(context.WithoutCancel(ctx), n, metric.WithAttributes(attribute.String("op", op)))
}

// op names the store operation on the calling goroutine's stack: the
// outermost exported Store method (UpdateOrder, not the tx it runs), or
// "other" (a call from outside any). Resolved once per call site.
func (m *meter) op() string {
	var pcs [32]uintptr
	n := runtime.Callers(3, pcs[:])
	name := "other"
	for _, pc := range pcs[:n] {
		if v, ok := m.names.Load(pc); ok {
			if s := v.(string); s != "" {
				name = s
			}
			continue
		}
		s := ""
		if fn := runtime.FuncForPC(pc - 1); fn != nil {
			s = storeMethod(fn.Name())
		}
		m.names.Store(pc, s)
		if s != "" {
			name = s
		}
	}
	return name
}

// storeMethod returns X for "…/shared/store.(*Store).X" with X exported
// (closures inside it included), else "".
func storeMethod(fn string) string {
	const marker = "/shared/store.(*Store)."
	i := strings.Index(fn, marker)
	if i < 0 {
		return ""
	}
	m := fn[i+len(marker):]
	if j := strings.IndexByte(m, '.'); j >= 0 {
		m = m[:j]
	}
	if m == "" || m[0] < 'A' || m[0] > 'Z' {
		return ""
	}
	return m
}

const firestoreRPC = "/google.firestore.v1.Firestore/"

// unary counts a unary call: a commit's writes and deletes once it
// succeeded, an ABORTED commit, a single get.
func (m *meter) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	op := m.op()
	err := invoker(ctx, method, req, reply, cc, opts...)
	switch strings.TrimPrefix(method, firestoreRPC) {
	case "Commit":
		if err != nil {
			if status.Code(err) == codes.Aborted {
				m.add(ctx, op, kAborted, 1)
			}
			return err
		}
		var w, d int64
		for _, wr := range req.(*firestorepb.CommitRequest).GetWrites() {
			if wr.GetDelete() != "" {
				d++
			} else {
				w++
			}
		}
		m.add(ctx, op, kWrites, w)
		m.add(ctx, op, kDeletes, d)
	case "GetDocument":
		m.add(ctx, op, kReads, 1)
	case "ListDocuments":
		m.add(ctx, op, kReads, max(1, int64(len(reply.(*firestorepb.ListDocumentsResponse).GetDocuments()))))
	}
	return err
}

// stream counts a streaming read: each document a batch get returned (a
// missing one too), each a query returned, one for a query that returned
// none, one for an aggregation.
func (m *meter) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	op := m.op()
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return cs, err
	}
	switch strings.TrimPrefix(method, firestoreRPC) {
	case "BatchGetDocuments", "RunQuery", "RunAggregationQuery":
		return &countingStream{ClientStream: cs, m: m, op: op, query: !strings.HasSuffix(method, "BatchGetDocuments")}, nil
	}
	return cs, nil
}

type countingStream struct {
	grpc.ClientStream
	m     *meter
	op    string
	query bool
	docs  int64
	done  bool
}

func (s *countingStream) RecvMsg(msg any) error {
	err := s.ClientStream.RecvMsg(msg)
	if err == nil {
		n := int64(0)
		switch r := msg.(type) {
		case *firestorepb.BatchGetDocumentsResponse:
			if r.GetFound() != nil || r.GetMissing() != "" {
				n = 1
			}
		case *firestorepb.RunQueryResponse:
			if r.GetDocument() != nil {
				n = 1
			}
		case *firestorepb.RunAggregationQueryResponse:
			if r.GetResult() != nil {
				n = 1
			}
		}
		s.docs += n
		s.m.add(context.Background(), s.op, kReads, n)
		return nil
	}
	if errors.Is(err, io.EOF) && s.query && s.docs == 0 && !s.done {
		s.m.add(context.Background(), s.op, kReads, 1) // an empty result is billed one read
	}
	s.done = true
	return err
}

// clientOptions are the Firestore client's options that count its calls.
// With the emulator the client dials its own connection and ignores dial
// options, so the store dials it here the same way, counted.
func (m *meter) clientOptions() ([]option.ClientOption, error) {
	counted := []grpc.DialOption{grpc.WithChainUnaryInterceptor(m.unary), grpc.WithChainStreamInterceptor(m.stream)}
	addr := os.Getenv("FIRESTORE_EMULATOR_HOST")
	if addr == "" {
		opts := make([]option.ClientOption, len(counted))
		for i, o := range counted {
			opts[i] = option.WithGRPCDialOption(o)
		}
		return opts, nil
	}
	if !strings.Contains(addr, "://") || strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		addr = "passthrough:///" + strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://")
	}
	conn, err := grpc.NewClient(addr, append(counted, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(emulatorOwner{}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)))...)
	if err != nil {
		return nil, err
	}
	m.conn = conn
	return []option.ClientOption{option.WithGRPCConn(conn)}, nil
}

// emulatorOwner is the credential the emulator takes as the project's
// owner (security rules bypassed), as the client sends it.
type emulatorOwner struct{}

func (emulatorOwner) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer owner"}, nil
}
func (emulatorOwner) RequireTransportSecurity() bool { return false }

// Usage returns the Firestore work of each store operation since the store
// was opened, by operation name.
func (s *Store) Usage() map[string]Usage {
	out := map[string]Usage{}
	s.meter.ops.Range(func(k, v any) bool {
		out[k.(string)] = v.(*opUsage).load()
		return true
	})
	return out
}

// TotalUsage sums Usage over the operations.
func TotalUsage(by map[string]Usage) Usage {
	var t Usage
	for _, u := range by {
		t = t.Add(u)
	}
	return t
}
