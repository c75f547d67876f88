package domain

import "sort"

// CartLine is one item in a cart.
type CartLine struct {
	ItemID   string
	Quantity int64
}

// Cart is a user's shopping cart; lines are kept sorted by item id.
type Cart struct {
	UserID string
	Lines  []CartLine
}

// Put sets a line as a shopper does: quantity 0 removes it, and a new line
// in a cart that already holds MaxLinesPerOrder lines is ErrCartFull (an
// order could not take them all). It reports whether the cart changed.
func (c *Cart) Put(itemID string, quantity int64) (bool, error) {
	if quantity > 0 && len(c.Lines) >= MaxLinesPerOrder && !c.Has(itemID) {
		return false, ErrCartFull
	}
	return c.Set(itemID, quantity), nil
}

// Has reports whether the cart has a line for itemID.
func (c *Cart) Has(itemID string) bool {
	for _, l := range c.Lines {
		if l.ItemID == itemID {
			return true
		}
	}
	return false
}

// Set puts a line; quantity 0 removes it. It reports whether the cart changed.
func (c *Cart) Set(itemID string, quantity int64) bool {
	for i, l := range c.Lines {
		if l.ItemID != itemID {
			continue
		}
		if quantity == 0 {
			c.Lines = append(c.Lines[:i], c.Lines[i+1:]...)
			return true
		}
		if l.Quantity == quantity {
			return false
		}
		c.Lines[i].Quantity = quantity
		return true
	}
	if quantity == 0 {
		return false
	}
	c.Lines = append(c.Lines, CartLine{ItemID: itemID, Quantity: quantity})
	sort.Slice(c.Lines, func(i, j int) bool { return c.Lines[i].ItemID < c.Lines[j].ItemID })
	return true
}

// Remove drops the given items. It reports whether the cart changed, so that
// clearing twice is a no-op.
func (c *Cart) Remove(itemIDs []string) bool {
	drop := make(map[string]bool, len(itemIDs))
	for _, id := range itemIDs {
		drop[id] = true
	}
	kept := c.Lines[:0]
	for _, l := range c.Lines {
		if !drop[l.ItemID] {
			kept = append(kept, l)
		}
	}
	changed := len(kept) != len(c.Lines)
	c.Lines = kept
	return changed
}
