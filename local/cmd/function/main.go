// Command function serves one function under functions-framework-go, as
// Cloud Functions does: FUNCTION_TARGET names the entry point (CreateOrder,
// DeductStock, ClearCart, Pay, HandleTimeout) and PORT the port.
//
//	FUNCTION_TARGET=CreateOrder PORT=8081 go run ./local/cmd/function
//
// METRICS_PORT, when set, serves the function's metrics in Prometheus text.
package main

import (
	"fmt"
	"os"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	_ "github.com/ordertimeout/ordertimeout/functions/clearcart"
	_ "github.com/ordertimeout/ordertimeout/functions/createorder"
	_ "github.com/ordertimeout/ordertimeout/functions/deductstock"
	_ "github.com/ordertimeout/ordertimeout/functions/handletimeout"
	_ "github.com/ordertimeout/ordertimeout/functions/pay"
	_ "github.com/ordertimeout/ordertimeout/functions/sweeper"
	"github.com/ordertimeout/ordertimeout/shared/telemetry"
)

func main() {
	if os.Getenv("FUNCTION_TARGET") == "" {
		fmt.Fprintln(os.Stderr, "FUNCTION_TARGET is required: one of CreateOrder, DeductStock, ClearCart, Pay, HandleTimeout, Sweep")
		os.Exit(2)
	}
	// Locally, METRICS_PORT serves the function's OpenTelemetry metrics in
	// Prometheus text (in production they go to Cloud Monitoring).
	if mp := os.Getenv("METRICS_PORT"); mp != "" {
		if _, err := telemetry.ServePrometheus("127.0.0.1:" + mp); err != nil {
			fmt.Fprintf(os.Stderr, "metrics on port %s: %v\n", mp, err)
			os.Exit(1)
		}
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := funcframework.Start(port); err != nil {
		fmt.Fprintf(os.Stderr, "functions-framework: %v\n", err)
		os.Exit(1)
	}
}
