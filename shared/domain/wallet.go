package domain

// Wallet is a user's balance in cents.
type Wallet struct {
	UserID       string
	BalanceCents int64
}

// Debit takes amount from the wallet, or fails with ErrInsufficientBalance
// and leaves it unchanged.
func (w *Wallet) Debit(amount int64) error {
	if amount < 0 {
		return Invalidf("amount must not be negative")
	}
	if w.BalanceCents < amount {
		return ErrInsufficientBalance
	}
	w.BalanceCents -= amount
	return nil
}
