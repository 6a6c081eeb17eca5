package mailtest

import "syscall"

// sysProcAttr makes the kernel kill mailpit if the test process dies first (a
// test binary killed by its -timeout, say), so no server outlives its test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
