package testenv

import (
	"testing"

	"github.com/ordertimeout/ordertimeout/local/rabbitcluster"
)

// StartCluster starts an n-node RabbitMQ cluster of its own (never joined
// with the machine's node, which every other test uses); when tb ends every
// node is stopped (killed if it does not stop) and its files removed,
// whatever the test did. A node that cannot start fails tb.
func StartCluster(tb testing.TB, n int) *rabbitcluster.Cluster {
	tb.Helper()
	c, err := rabbitcluster.Start(n, StablePort)
	if c != nil {
		tb.Cleanup(c.Stop)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return c
}
