// Command seed loads catalog items, wallets and carts from a JSON file into
// Firestore, replacing what the ids name. Against the emulator set
// FIRESTORE_EMULATOR_HOST; against a deployed project use Application
// Default Credentials (gcloud auth application-default login).
//
//	go run ./local/cmd/seed -project my-project -file local/seed.json
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/ordertimeout/ordertimeout/local/seed"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

func main() {
	project := flag.String("project", os.Getenv("FIRESTORE_PROJECT_ID"), "Firestore project id (default $FIRESTORE_PROJECT_ID)")
	file := flag.String("file", "local/seed.json", "seed file")
	flag.Parse()
	if err := run(*project, *file); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func run(project, file string) error {
	if project == "" {
		return fmt.Errorf("-project (or FIRESTORE_PROJECT_ID) is required")
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := seed.Parse(f)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := store.New(ctx, project)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := seed.Apply(ctx, s, data); err != nil {
		return err
	}
	fmt.Printf("seeded project %s: %d items, %d wallets, %d carts\n", project, len(data.Items), len(data.Wallets), len(data.Carts))
	return nil
}
