package agent_test

import (
	"testing"

	"github.com/picockpit/picockpit-client/agent/agenttest"
)

// TestMain removes the agent binary the process tests build.
func TestMain(m *testing.M) { agenttest.Main(m, nil) }
