package domain

import "regexp"

// Limits on what one request may ask for.
const (
	MaxIDLength       = 128
	MaxLinesPerOrder  = 50
	MaxQuantityPerRow = 1000
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidID reports whether s is usable as an item, user or order id: 1 to 128
// characters of letters, digits, '.', '_' and '-', starting with a letter or
// digit (so never '/', '.', '..' or Firestore's reserved __x__ form).
func ValidID(s string) bool {
	return len(s) <= MaxIDLength && idPattern.MatchString(s)
}

// CheckID returns an *InvalidError naming field when id is not ValidID.
func CheckID(field, id string) error {
	if id == "" {
		return Invalidf("%s is required", field)
	}
	if !ValidID(id) {
		return Invalidf("%s must be 1-%d characters of letters, digits, '.', '_' or '-', starting with a letter or digit", field, MaxIDLength)
	}
	return nil
}

// CheckWants validates the lines of an order: at least one, at most
// MaxLinesPerOrder, valid distinct item ids, quantities 1..MaxQuantityPerRow.
func CheckWants(wants []Want) error {
	if len(wants) == 0 {
		return Invalidf("items must not be empty")
	}
	if len(wants) > MaxLinesPerOrder {
		return Invalidf("at most %d items per order", MaxLinesPerOrder)
	}
	seen := make(map[string]bool, len(wants))
	for i, w := range wants {
		if err := CheckID("items[].itemId", w.ItemID); err != nil {
			return err
		}
		if seen[w.ItemID] {
			return Invalidf("items[%d]: duplicate itemId %q", i, w.ItemID)
		}
		seen[w.ItemID] = true
		if w.Quantity < 1 || w.Quantity > MaxQuantityPerRow {
			return Invalidf("items[%d]: quantity must be between 1 and %d", i, MaxQuantityPerRow)
		}
	}
	return nil
}
