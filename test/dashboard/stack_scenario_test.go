package dashboard

import "testing"

// TestScenarioOutcomes plays the recorded scenario through the real
// tracker and collector and checks every outcome it must produce; the
// browser tests rely on them.
func TestScenarioOutcomes(t *testing.T) {
	s := newStack(t)
	s.play(loadScenario(t))
	s.checkOutcomes()
}
