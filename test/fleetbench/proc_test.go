package fleetbench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat: 100 on
// every Linux architecture Go supports, whatever the kernel's own HZ.
const clockTicks = 100

// procStat returns a process's parent pid and CPU times from /proc/PID/stat:
// its own user+system time, and that of the children it has waited for.
func procStat(pid int) (ppid int, self, children time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after its closing one, which starts at field 3 (state).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	num := func(k int) int64 { n, _ := strconv.ParseInt(f[k], 10, 64); return n }
	tick := time.Second / clockTicks
	// Fields 4 (ppid), 14-15 (utime, stime), 16-17 (cutime, cstime).
	return int(num(1)), time.Duration(num(11)+num(12)) * tick, time.Duration(num(13)+num(14)) * tick, nil
}

// processCPU is a process's own CPU time so far.
func processCPU(pid int) (time.Duration, error) {
	_, self, _, err := procStat(pid)
	return self, err
}

// treeCPU is the CPU time of a server made of a parent and its worker
// processes (PostgreSQL: the postmaster and its backends): the parent's own
// time, the time of the children it has reaped, and that of the live
// children. A backend that exits between two readings moves from the third
// term to the second, so deltas count it once.
func treeCPU(parent int) (time.Duration, error) {
	_, self, reaped, err := procStat(parent)
	if err != nil {
		return 0, err
	}
	total := self + reaped
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == parent {
			continue
		}
		ppid, cpu, _, err := procStat(pid)
		if err == nil && ppid == parent {
			total += cpu
		}
	}
	return total, nil
}

// ownCPU is this process's CPU time: the simulated agents and the benchmark.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU reads the first line of /proc/stat: the time all CPUs spent
// busy, and in total, in ticks.
func machineCPU() (busy, total int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	// user nice system idle iowait irq softirq steal (guest time is already
	// counted in user).
	var v [8]int64
	for k := range v {
		v[k], _ = strconv.ParseInt(f[k+1], 10, 64)
		total += v[k]
	}
	return total - v[3] - v[4], total, nil
}

// residentKB is a process's VmRSS, in KiB.
func residentKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}
