//go:build race

package agenttest

// raceEnabled: this test binary runs under the race detector, so Binary
// builds the agent with it too (and reuses the packages go test compiled).
const raceEnabled = true
