// Package seed loads catalog items, wallets and carts from the contract's
// JSON shape, replacing the documents the ids name:
//
//	{"items":[{"itemId","name","priceCents","stock","shards"?,"maxPerShopper"?}],
//	 "wallets":[{"userId","balanceCents"}],
//	 "carts":[{"userId","items":[{"itemId","quantity"}]}]}
package seed

import (
	"context"
	"fmt"
	"io"

	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/httpx"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

// Item is a catalog entry.
type Item struct {
	ItemID     string `json:"itemId"`
	Name       string `json:"name"`
	PriceCents int64  `json:"priceCents"`
	Stock      int64  `json:"stock"`
	// Shards is how many documents hold the stock (optional; 1 by
	// default): more spreads a popular item's orders (see README).
	Shards int `json:"shards,omitempty"`
	// MaxPerShopper caps one shopper's units in UNPAID and PAID orders
	// (optional; absent: no limit).
	MaxPerShopper *int64 `json:"maxPerShopper,omitempty"`
}

// Wallet is a user's balance.
type Wallet struct {
	UserID       string `json:"userId"`
	BalanceCents int64  `json:"balanceCents"`
}

// CartLine is one cart line.
type CartLine struct {
	ItemID   string `json:"itemId"`
	Quantity int64  `json:"quantity"`
}

// Cart is a user's cart.
type Cart struct {
	UserID string     `json:"userId"`
	Items  []CartLine `json:"items"`
}

// Data is a seed file.
type Data struct {
	Items   []Item   `json:"items"`
	Wallets []Wallet `json:"wallets"`
	Carts   []Cart   `json:"carts"`
}

// Parse reads and validates a seed file (strict JSON: unknown fields are errors).
func Parse(r io.Reader) (Data, error) {
	var d Data
	if err := httpx.DecodeBytes(r, &d); err != nil {
		return d, fmt.Errorf("seed file: %w", err)
	}
	return d, d.Validate()
}

// Validate checks ids and amounts.
func (d Data) Validate() error {
	for i, it := range d.Items {
		if err := domain.CheckID(fmt.Sprintf("items[%d].itemId", i), it.ItemID); err != nil {
			return err
		}
		if it.PriceCents < 0 || it.Stock < 0 {
			return domain.Invalidf("items[%d]: priceCents and stock must not be negative", i)
		}
		if it.PriceCents > domain.MaxPriceCents {
			return domain.Invalidf("items[%d]: priceCents %d is over the limit of %d, above which an order of %d lines × %d units could overflow int64 cents",
				i, it.PriceCents, int64(domain.MaxPriceCents), domain.MaxLinesPerOrder, domain.MaxQuantityPerRow)
		}
		if err := domain.CheckShards(fmt.Sprintf("items[%d]", i), it.Shards); err != nil {
			return err
		}
		if it.MaxPerShopper != nil {
			if err := domain.CheckMaxPerShopper(fmt.Sprintf("items[%d]", i), *it.MaxPerShopper); err != nil || *it.MaxPerShopper == 0 {
				return domain.Invalidf("items[%d]: maxPerShopper must be between 1 and %d (absent: no limit)", i, domain.MaxPerShopperLimit)
			}
		}
		if it.Stock > domain.MaxStock {
			return domain.Invalidf("items[%d]: stock %d is over the limit of %d", i, it.Stock, int64(domain.MaxStock))
		}
	}
	for i, w := range d.Wallets {
		if err := domain.CheckID(fmt.Sprintf("wallets[%d].userId", i), w.UserID); err != nil {
			return err
		}
		if w.BalanceCents < 0 {
			return domain.Invalidf("wallets[%d]: balanceCents must not be negative", i)
		}
		if w.BalanceCents > domain.MaxBalanceCents {
			return domain.Invalidf("wallets[%d]: balanceCents %d is over the limit of %d, above which crediting a maximal order could overflow int64 cents",
				i, w.BalanceCents, int64(domain.MaxBalanceCents))
		}
	}
	for i, c := range d.Carts {
		if err := domain.CheckID(fmt.Sprintf("carts[%d].userId", i), c.UserID); err != nil {
			return err
		}
		for j, l := range c.Items {
			if err := domain.CheckID(fmt.Sprintf("carts[%d].items[%d].itemId", i, j), l.ItemID); err != nil {
				return err
			}
			if l.Quantity < 1 || l.Quantity > domain.MaxQuantityPerRow {
				return domain.Invalidf("carts[%d].items[%d]: quantity must be between 1 and %d", i, j, domain.MaxQuantityPerRow)
			}
		}
	}
	return nil
}

// Apply writes the data, replacing what the ids name.
func Apply(ctx context.Context, s *store.Store, d Data) error {
	if err := d.Validate(); err != nil {
		return err
	}
	for _, it := range d.Items {
		item := domain.Item{ID: it.ItemID, Name: it.Name, PriceCents: it.PriceCents, Stock: it.Stock, Shards: it.Shards}
		if it.MaxPerShopper != nil {
			item.MaxPerShopper = *it.MaxPerShopper
		}
		if err := s.PutItem(ctx, item); err != nil {
			return fmt.Errorf("item %s: %w", it.ItemID, err)
		}
	}
	for _, w := range d.Wallets {
		if err := s.PutWallet(ctx, domain.Wallet{UserID: w.UserID, BalanceCents: w.BalanceCents}); err != nil {
			return fmt.Errorf("wallet %s: %w", w.UserID, err)
		}
	}
	for _, c := range d.Carts {
		cart := domain.Cart{UserID: c.UserID}
		for _, l := range c.Items {
			cart.Set(l.ItemID, l.Quantity)
		}
		if err := s.PutCart(ctx, cart); err != nil {
			return fmt.Errorf("cart %s: %w", c.UserID, err)
		}
	}
	return nil
}
