//go:build !linux

package mailtest

import "syscall"

// sysProcAttr: only Linux can tie a child's life to its parent's; elsewhere
// mailpit is stopped by the test's cleanup alone.
func sysProcAttr() *syscall.SysProcAttr { return nil }
