package domain

// Change reports what a state transition did. Only Applied changed anything;
// NoOp and Refused are harmless answers for repeated and illegal transitions,
// so a redelivered event can never double an effect.
type Change int

const (
	// Applied: the state changed; the caller must persist it.
	Applied Change = iota + 1
	// NoOp: the aggregate is already in the requested state.
	NoOp
	// Refused: the aggregate is in a terminal state other than the requested one.
	Refused
)

func (c Change) String() string {
	switch c {
	case Applied:
		return "applied"
	case NoOp:
		return "no-op"
	case Refused:
		return "refused"
	}
	return "unknown"
}
