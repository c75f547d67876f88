// Command token mints a local/test user token (HS256, AUTH_HS256_SECRET).
//
//	AUTH_HS256_SECRET=... go run ./local/cmd/token -user alice
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/domain"
)

func main() {
	user := flag.String("user", "", "user id (the token's sub)")
	ttl := flag.Duration("ttl", 24*time.Hour, "lifetime")
	flag.Parse()
	secret := os.Getenv("AUTH_HS256_SECRET")
	if len(secret) < 16 || !domain.ValidID(*user) {
		fmt.Fprintln(os.Stderr, "token: set AUTH_HS256_SECRET (16+ bytes) and -user to a valid user id")
		os.Exit(2)
	}
	tok, err := auth.SignHS256([]byte(secret), *user, *ttl)
	if err != nil {
		fmt.Fprintln(os.Stderr, "token:", err)
		os.Exit(1)
	}
	fmt.Println(tok)
}
