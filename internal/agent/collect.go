package agent

// Inventory and metrics, read from the kernel's files under a root directory
// ("/" in production, a fake tree in tests). No external commands.

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"upanel/internal/wire"
)

// maxOSVersion is the width of servers.os_version (VARCHAR(50)).
const maxOSVersion = 50

// StatfsFunc reports the size of the filesystem holding path and its free
// space, in bytes.
type StatfsFunc func(path string) (total, free uint64, err error)

// Statfs is the real StatfsFunc. Like df, total is f_blocks and free is
// f_bfree (including the blocks reserved for root), so used = total - free
// matches df's "Used" column.
func Statfs(path string) (total, free uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, 0, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	bs := uint64(st.Bsize)
	return st.Blocks * bs, st.Bfree * bs, nil
}

// ReadHost reads the server's inventory under root ("/" in production):
// hostname, OS, kernel, CPU cores, RAM, the size of root's filesystem and the
// boot time. It returns what it could read together with an error naming
// what it could not, so a caller may log the error and still report the rest.
func ReadHost(root, agentVersion string) (wire.Host, error) {
	return readHost(root, agentVersion, Statfs)
}

func readHost(root, agentVersion string, statfs StatfsFunc) (wire.Host, error) {
	h := wire.Host{Arch: runtime.GOARCH, AgentVersion: agentVersion}
	var errs []error

	if b, err := os.ReadFile(filepath.Join(root, "proc/sys/kernel/hostname")); err == nil {
		h.Hostname = strings.TrimSpace(string(b))
	} else if name, herr := os.Hostname(); root == "/" && herr == nil {
		h.Hostname = name
	} else {
		errs = append(errs, err)
	}

	if name, err := readOSRelease(root); err == nil {
		h.OS = name
	} else {
		errs = append(errs, err)
	}

	if b, err := os.ReadFile(filepath.Join(root, "proc/sys/kernel/osrelease")); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	} else {
		errs = append(errs, err)
	}

	h.CPUCores = runtime.NumCPU()
	if b, err := os.ReadFile(filepath.Join(root, "proc/cpuinfo")); err == nil {
		if n := countProcessors(b); n > 0 {
			h.CPUCores = n
		}
	}

	if b, err := os.ReadFile(filepath.Join(root, "proc/meminfo")); err != nil {
		errs = append(errs, err)
	} else if mi := parseMeminfo(b); mi.total == 0 {
		errs = append(errs, fmt.Errorf("%s: no MemTotal", filepath.Join(root, "proc/meminfo")))
	} else {
		h.RAMMB = int(mi.total / 1024)
	}

	if total, _, err := statfs(root); err != nil {
		errs = append(errs, err)
	} else {
		h.DiskGB = gib(total)
	}

	if b, err := os.ReadFile(filepath.Join(root, "proc/stat")); err != nil {
		errs = append(errs, err)
	} else if bt, ok := parseBootTime(b); !ok {
		errs = append(errs, fmt.Errorf("%s: no btime", filepath.Join(root, "proc/stat")))
	} else {
		h.BootTime = bt
	}
	return h, errors.Join(errs...)
}

// readOSRelease returns PRETTY_NAME from os-release (falling back to NAME
// VERSION_ID), cut to maxOSVersion characters.
func readOSRelease(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "etc/os-release"))
	if errors.Is(err, os.ErrNotExist) {
		b, err = os.ReadFile(filepath.Join(root, "usr/lib/os-release"))
	}
	if err != nil {
		return "", err
	}
	kv := parseOSRelease(b)
	name := kv["PRETTY_NAME"]
	if name == "" {
		name = strings.TrimSpace(kv["NAME"] + " " + kv["VERSION_ID"])
	}
	if name == "" {
		return "", errors.New("os-release has no PRETTY_NAME or NAME")
	}
	return truncateRunes(name, maxOSVersion), nil
}

// parseOSRelease reads os-release's KEY=value lines, with values optionally
// in double or single quotes and backslash escapes inside double quotes.
func parseOSRelease(b []byte) map[string]string {
	kv := map[string]string{}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch {
		case len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"':
			v = v[1 : len(v)-1]
			var sb strings.Builder
			for i := 0; i < len(v); i++ {
				if v[i] == '\\' && i+1 < len(v) && strings.IndexByte("\"\\$`", v[i+1]) >= 0 {
					i++
				}
				sb.WriteByte(v[i])
			}
			v = sb.String()
		case len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'':
			v = v[1 : len(v)-1]
		}
		kv[k] = v
	}
	return kv
}

// truncateRunes cuts s to at most n characters, keeping it valid UTF-8.
func truncateRunes(s string, n int) string {
	s = strings.ToValidUTF8(s, "")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return strings.TrimSpace(s[:j])
		}
		i++
	}
	return s
}

// countProcessors counts the "processor : N" lines of /proc/cpuinfo.
func countProcessors(b []byte) int {
	n := 0
	for line := range strings.Lines(string(b)) {
		k, _, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "processor" {
			n++
		}
	}
	return n
}

type meminfo struct{ total, available uint64 } // kB

// parseMeminfo reads MemTotal and MemAvailable (kB). On kernels older than
// 3.14, which lack MemAvailable, it estimates it as MemFree+Buffers+Cached.
func parseMeminfo(b []byte) meminfo {
	var m meminfo
	var free, buffers, cached uint64
	haveAvail := false
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "MemTotal":
			m.total = n
		case "MemAvailable":
			m.available, haveAvail = n, true
		case "MemFree":
			free = n
		case "Buffers":
			buffers = n
		case "Cached":
			cached = n
		}
	}
	if !haveAvail {
		m.available = min(free+buffers+cached, m.total)
	}
	return m
}

// parseBootTime reads the btime line of /proc/stat.
func parseBootTime(b []byte) (time.Time, bool) {
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "btime "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			if err != nil {
				return time.Time{}, false
			}
			return time.Unix(n, 0).UTC(), true
		}
	}
	return time.Time{}, false
}

// gib converts bytes to whole GiB, rounded to the nearest.
func gib(bytes uint64) int {
	return int((bytes + 1<<29) >> 30)
}

// cpuTimes are the aggregate "cpu" line of /proc/stat, in clock ticks.
type cpuTimes struct {
	total uint64 // user+nice+system+idle+iowait+irq+softirq+steal
	idle  uint64 // idle+iowait
}

// parseCPUTimes reads the aggregate "cpu" line of /proc/stat. guest and
// guest_nice are left out of the total: the kernel already counts them in
// user and nice.
func parseCPUTimes(b []byte) (cpuTimes, error) {
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "cpu ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 4 {
			return cpuTimes{}, errors.New("/proc/stat: short cpu line")
		}
		var v [8]uint64
		for i := 0; i < len(v) && i < len(f); i++ {
			n, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("/proc/stat: cpu field %d: %w", i+1, err)
			}
			v[i] = n
		}
		var t cpuTimes
		for _, n := range v {
			t.total += n
		}
		t.idle = v[3] + v[4]
		return t, nil
	}
	return cpuTimes{}, errors.New("/proc/stat: no cpu line")
}

// cpuPercent is the share of non-idle time between two readings, rounded to
// two decimals and clamped to 0..100 (servers.cpu_percent is DECIMAL(5,2)).
// iowait may go backwards on some kernels; a reading that did not advance
// counts as idle.
func cpuPercent(prev, cur cpuTimes) float64 {
	if cur.total <= prev.total {
		return 0
	}
	dt := float64(cur.total - prev.total)
	di := 0.0
	if cur.idle > prev.idle {
		di = float64(cur.idle - prev.idle)
	}
	p := (dt - di) / dt * 100
	p = math.Round(p*100) / 100
	return max(0, min(100, p))
}

// ifCounters are one interface's byte counters from /proc/net/dev.
type ifCounters struct{ rx, tx uint64 }

// parseNetDev reads /proc/net/dev: two header lines, then
// "name: rx_bytes rx_packets ... (8 receive fields) tx_bytes ...".
func parseNetDev(b []byte) (map[string]ifCounters, error) {
	m := map[string]ifCounters{}
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue // the header lines have '|', not ':'
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if name == "" || len(f) < 9 {
			return nil, fmt.Errorf("/proc/net/dev: malformed line %q", strings.TrimSpace(line))
		}
		rx, err1 := strconv.ParseUint(f[0], 10, 64)
		tx, err2 := strconv.ParseUint(f[8], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("/proc/net/dev: %s: %w", name, err)
		}
		m[name] = ifCounters{rx: rx, tx: tx}
	}
	if len(m) == 0 {
		return nil, errors.New("/proc/net/dev: no interfaces")
	}
	return m, nil
}

// containerIfacePrefixes name the interfaces that only relay traffic that a
// physical interface also counts: Docker's bridges and veth pairs, libvirt,
// CNI plugins, traffic-shaping ifb devices.
var containerIfacePrefixes = []string{"veth", "docker", "br-", "virbr", "vnet", "cni", "flannel", "cali", "ifb"}

// countedIfaces says which interfaces the network totals sum. Loopback never
// counts, nor do container bridges and veths (their traffic also crosses the
// uplink, so counting both would double it). When sysfs lists the virtual
// interfaces and at least one is not virtual (a VM or bare metal), only the
// non-virtual ones count, which also leaves out VLANs, bonds and tunnels over
// them. Inside a container-based VPS every interface is virtual, so the name
// rule alone applies.
func countedIfaces(cur map[string]ifCounters, virtual map[string]bool) map[string]bool {
	counted := map[string]bool{}
	physical := false
	for name := range cur {
		if name == "lo" || hasAnyPrefix(name, containerIfacePrefixes) {
			continue
		}
		counted[name] = true
		if virtual != nil && !virtual[name] {
			physical = true
		}
	}
	if physical {
		for name := range counted {
			if virtual[name] {
				delete(counted, name)
			}
		}
	}
	return counted
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// readVirtualIfaces lists root/sys/devices/virtual/net, or returns nil when
// it cannot (no sysfs).
func readVirtualIfaces(root string) map[string]bool {
	ents, err := os.ReadDir(filepath.Join(root, "sys/devices/virtual/net"))
	if err != nil {
		return nil
	}
	m := make(map[string]bool, len(ents))
	for _, e := range ents {
		m[e.Name()] = true
	}
	return m
}

// counterDelta is cur-prev, or cur when the counter went backwards (the
// interface was re-created, or a 32-bit counter wrapped).
func counterDelta(prev, cur uint64) int64 {
	if cur < prev {
		return int64(cur)
	}
	return int64(cur - prev)
}

// netDeltas sums the bytes received and sent by the counted interfaces
// since prev, interface by interface, so that an interface appearing or
// disappearing does not show as a spike or a dip. An interface absent from
// prev counts from zero.
func netDeltas(prev, cur map[string]ifCounters, counted map[string]bool) (in, out int64) {
	for name, c := range cur {
		if !counted[name] {
			continue
		}
		p := prev[name] // zero when new
		in += counterDelta(p.rx, c.rx)
		out += counterDelta(p.tx, c.tx)
	}
	return in, out
}

// Sampler reads metrics samples. CPU percent and network bytes are deltas
// between readings: NewSampler takes a first reading, so the first Sample
// covers the time since NewSampler (take it one interval later; a Sample
// taken at once covers almost nothing and may show 0% CPU). If that first
// reading failed, the first Sample reports 0% CPU and nil network bytes.
// A Sampler is safe for concurrent use.
type Sampler struct {
	root   string
	statfs StatfsFunc

	mu      sync.Mutex
	cpu     cpuTimes
	haveCPU bool
	net     map[string]ifCounters // nil until a reading succeeds
}

// NewSampler returns a Sampler reading the kernel's files under root ("/" in
// production) and measuring the disk of root's filesystem with statfs (nil
// means Statfs).
func NewSampler(root string, statfs func(path string) (total, free uint64, err error)) *Sampler {
	if statfs == nil {
		statfs = Statfs
	}
	s := &Sampler{root: root, statfs: statfs}
	if b, err := os.ReadFile(filepath.Join(root, "proc/stat")); err == nil {
		if t, err := parseCPUTimes(b); err == nil {
			s.cpu, s.haveCPU = t, true
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "proc/net/dev")); err == nil {
		if m, err := parseNetDev(b); err == nil {
			s.net = m
		}
	}
	return s
}

// Sample takes a reading at now. It returns what it could read together
// with an error naming what it could not.
func (s *Sampler) Sample(now time.Time) (wire.Sample, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := wire.Sample{At: now.UTC()}
	var errs []error

	if b, err := os.ReadFile(filepath.Join(s.root, "proc/stat")); err != nil {
		errs = append(errs, err)
	} else if t, err := parseCPUTimes(b); err != nil {
		errs = append(errs, err)
	} else {
		if s.haveCPU {
			out.CPUPercent = cpuPercent(s.cpu, t)
		}
		s.cpu, s.haveCPU = t, true
	}

	if b, err := os.ReadFile(filepath.Join(s.root, "proc/meminfo")); err != nil {
		errs = append(errs, err)
	} else if mi := parseMeminfo(b); mi.total == 0 {
		errs = append(errs, errors.New("/proc/meminfo: no MemTotal"))
	} else {
		out.RAMTotalMB = int(mi.total / 1024)
		out.RAMUsedMB = int((mi.total - min(mi.available, mi.total)) / 1024)
	}

	if total, free, err := s.statfs(s.root); err != nil {
		errs = append(errs, err)
	} else {
		out.DiskTotalGB = gib(total)
		out.DiskUsedGB = gib(total - min(free, total))
	}

	if b, err := os.ReadFile(filepath.Join(s.root, "proc/net/dev")); err != nil {
		errs = append(errs, err)
	} else if cur, err := parseNetDev(b); err != nil {
		errs = append(errs, err)
	} else {
		if s.net != nil {
			in, sent := netDeltas(s.net, cur, countedIfaces(cur, readVirtualIfaces(s.root)))
			out.NetInBytes, out.NetOutBytes = &in, &sent
		}
		s.net = cur
	}
	return out, errors.Join(errs...)
}

// Buffer is a bounded FIFO of samples, kept while the panel is unreachable.
// When it is full, Add drops the oldest sample and counts it. It is safe for
// concurrent use; Take and Drop are meant for one consumer.
type Buffer struct {
	mu      sync.Mutex
	ring    []wire.Sample
	head, n int
	dropped uint64
	// evicted counts the samples Add dropped since the last Take, so that
	// Drop does not remove samples that were never taken.
	evicted int
}

// NewBuffer returns a Buffer holding at most capacity samples (at least 1).
func NewBuffer(capacity int) *Buffer {
	return &Buffer{ring: make([]wire.Sample, max(capacity, 1))}
}

// Add appends a sample, dropping the oldest one if the buffer is full.
func (b *Buffer) Add(s wire.Sample) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n == len(b.ring) {
		b.ring[b.head] = wire.Sample{}
		b.head = (b.head + 1) % len(b.ring)
		b.n--
		b.dropped++
		b.evicted++
	}
	b.ring[(b.head+b.n)%len(b.ring)] = s
	b.n++
}

// Take returns copies of up to n oldest samples, oldest first, without
// removing them.
func (b *Buffer) Take(n int) []wire.Sample {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.evicted = 0
	n = max(0, min(n, b.n))
	out := make([]wire.Sample, n)
	for i := range out {
		out[i] = b.ring[(b.head+i)%len(b.ring)]
	}
	return out
}

// Drop removes the n oldest samples, once the n samples of the last Take
// have been pushed. Samples of that Take that Add has dropped since (the
// buffer filled up during the push) count towards n, so samples that were
// never taken are not lost.
func (b *Buffer) Drop(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n -= b.evicted
	b.evicted = 0
	n = max(0, min(n, b.n))
	for i := 0; i < n; i++ {
		b.ring[(b.head+i)%len(b.ring)] = wire.Sample{} // release the pointers
	}
	b.head = (b.head + n) % len(b.ring)
	b.n -= n
}

// Len is the number of samples held.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// Dropped is how many samples Add has dropped because the buffer was full.
func (b *Buffer) Dropped() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}
