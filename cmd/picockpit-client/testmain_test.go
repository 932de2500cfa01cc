package main

import (
	"testing"

	"github.com/picockpit/picockpit-client/agent/agenttest"
)

// TestMain makes this test binary the agent that agenttest.StartProcess
// runs: nothing is built, and the process tests run this very code.
func TestMain(m *testing.M) {
	agenttest.Main(m, processMain)
}
