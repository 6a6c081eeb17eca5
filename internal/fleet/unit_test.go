package fleet

import (
	"strings"
	"testing"
)

// The agent's unit leaves room for git and compose, which run in its cgroup,
// lets the OOM killer take them before the agent, and gives the agent time
// to put a release back when it is stopped mid-deploy.
func TestAgentUnitLimits(t *testing.T) {
	for _, line := range []string{"MemoryMax=1G", "OOMScoreAdjust=-500", "KillMode=mixed", "TimeoutStopSec=7min"} {
		if !strings.Contains(agentUnit, "\n"+line+"\n") {
			t.Errorf("the unit lacks %s:\n%s", line, agentUnit)
		}
	}
	if strings.Contains(agentUnit, "MemoryMax=128M") {
		t.Error("the unit still caps git and compose at 128M")
	}
}
