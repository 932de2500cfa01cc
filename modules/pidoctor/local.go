package pidoctor

import (
	"context"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// RunLocal loads the checks and runs them all on this machine, for the
// command line (picockpit-client doctor), through the same loading, runner
// and rules as a request over MQTT. It returns the report and the problems
// of the configuration (bad checks are left out of the report).
func RunLocal(ctx context.Context, env modules.Env, section []byte, sectionFile string, files []modules.File) (contract.PiDoctorReport, []modules.Problem) {
	m, probs := load(env, section, sectionFile, files)
	defer m.host.Close()
	return m.runner.report(ctx, m.order), probs
}
