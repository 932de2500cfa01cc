//go:build !race

package agenttest

// raceEnabled: see race_on.go.
const raceEnabled = false
