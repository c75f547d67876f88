package domain

import (
	"math"
	"math/bits"
)

// Money bounds. Every amount is int64 cents and never wraps: a maximal
// order (MaxLinesPerOrder lines of MaxQuantityPerRow units at
// MaxPriceCents) fits in half the int64 range, and a balance leaves room to
// be credited a maximal order. The seed refuses catalog prices and
// balances beyond them; arithmetic on amounts stored some other way is
// checked all the same.
const (
	MaxPriceCents   = math.MaxInt64 / (2 * MaxLinesPerOrder * MaxQuantityPerRow)
	MaxOrderCents   = MaxPriceCents * MaxLinesPerOrder * MaxQuantityPerRow
	MaxBalanceCents = math.MaxInt64 - MaxOrderCents
	// MaxStock bounds an item's stock so that giving back any order's units
	// never wraps it.
	MaxStock = math.MaxInt64 / 2
)

// overflow is the error of an amount that does not fit in int64 cents.
func overflow(what string) error {
	return &InvalidError{Msg: what + " does not fit in int64 cents", Cause: ErrAmountOverflow}
}

// MulCents is price × quantity, both non-negative, or an overflow error.
func MulCents(what string, price, quantity int64) (int64, error) {
	if price < 0 || quantity < 0 {
		return 0, Invalidf("%s: negative amount", what)
	}
	hi, lo := bits.Mul64(uint64(price), uint64(quantity))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, overflow(what)
	}
	return int64(lo), nil
}

// AddCents is a + b, both non-negative, or an overflow error.
func AddCents(what string, a, b int64) (int64, error) {
	if a < 0 || b < 0 {
		return 0, Invalidf("%s: negative amount", what)
	}
	if a > math.MaxInt64-b {
		return 0, overflow(what)
	}
	return a + b, nil
}

// Total is the sum of the lines' quantity × price, checked.
func Total(lines []OrderLine) (int64, error) {
	var total int64
	for _, l := range lines {
		line, err := MulCents("line total of item "+l.ItemID, l.PriceCents, l.Quantity)
		if err != nil {
			return 0, err
		}
		if total, err = AddCents("order total", total, line); err != nil {
			return 0, err
		}
	}
	return total, nil
}
