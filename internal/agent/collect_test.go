package agent

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"upanel/internal/wire"
)

const gibibyte = 1 << 30

func fakeStatfs(total, free uint64) StatfsFunc {
	return func(string) (uint64, uint64, error) { return total, free, nil }
}

// copyTree copies testdata/src into a new temporary directory.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// install copies a testdata file to root/name.
func install(t *testing.T, root, name, testdataFile string) {
	t.Helper()
	b, err := os.ReadFile(testdataFile)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, root, name, string(b))
}

func writeFile(t *testing.T, root, name, content string) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadHostFakeRoot(t *testing.T) {
	h, err := readHost("testdata/host", "1.2.3", fakeStatfs(40*gibibyte-300<<20, 10*gibibyte))
	if err != nil {
		t.Fatal(err)
	}
	want := wire.Host{
		Hostname:     "web-1",
		OS:           "Debian GNU/Linux 12 (bookworm)",
		Kernel:       "6.18.44-fc-v657",
		Arch:         runtime.GOARCH,
		CPUCores:     2,
		RAMMB:        24731708 / 1024,
		DiskGB:       40, // 39.7 GiB rounds to 40
		AgentVersion: "1.2.3",
		BootTime:     time.Unix(1795713586, 0).UTC(),
	}
	if h != want {
		t.Errorf("ReadHost:\n got %+v\nwant %+v", h, want)
	}
}

func TestReadHostPartial(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "etc/os-release", "NAME=\"Alpine Linux\"\nVERSION_ID=3.20.0\n")
	h, err := readHost(root, "v", fakeStatfs(0, 0))
	if err == nil {
		t.Fatal("no error for a root without /proc")
	}
	if h.OS != "Alpine Linux 3.20.0" || h.CPUCores != runtime.NumCPU() || h.Arch != runtime.GOARCH {
		t.Errorf("partial host = %+v", h)
	}
	if !strings.Contains(err.Error(), "meminfo") || !strings.Contains(err.Error(), "stat") {
		t.Errorf("error does not name what failed: %v", err)
	}
}

func TestParseOSRelease(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"debian", `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"` + "\nNAME=x\n", "Debian GNU/Linux 12 (bookworm)"},
		{"ubuntu", "NAME=\"Ubuntu\"\nPRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\n", "Ubuntu 24.04.1 LTS"},
		{"single quotes", "PRETTY_NAME='Fedora Linux 40'\n", "Fedora Linux 40"},
		{"unquoted", "PRETTY_NAME=Arch\n", "Arch"},
		{"escapes", `PRETTY_NAME="Say \"hi\" \$HOME"`, `Say "hi" $HOME`},
		{"comments", "# PRETTY_NAME=\"no\"\n\nPRETTY_NAME=\"yes\"\n", "yes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseOSRelease([]byte(tt.in))["PRETTY_NAME"]; got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOSVersionTruncated(t *testing.T) {
	root := t.TempDir()
	long := "Ubuntü " + strings.Repeat("very long name ", 10)
	writeFile(t, root, "etc/os-release", `PRETTY_NAME="`+long+`"`)
	got, err := readOSRelease(root)
	if err != nil {
		t.Fatal(err)
	}
	if n := len([]rune(got)); n > maxOSVersion || !strings.HasPrefix(got, "Ubuntü very") {
		t.Errorf("got %q (%d characters)", got, n)
	}
	// The fallback file of the os-release spec.
	root = t.TempDir()
	writeFile(t, root, "usr/lib/os-release", `PRETTY_NAME="Debian GNU/Linux 13 (trixie)"`)
	if got, err := readOSRelease(root); err != nil || got != "Debian GNU/Linux 13 (trixie)" {
		t.Errorf("usr/lib/os-release: %q, %v", got, err)
	}
}

func TestCountProcessors(t *testing.T) {
	b, err := os.ReadFile("testdata/host/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	if n := countProcessors(b); n != 2 {
		t.Errorf("x86 cpuinfo: %d processors, want 2", n)
	}
	arm := "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\n\nprocessor\t: 1\nBogoMIPS\t: 50.00\n\nprocessor\t: 2\n\nprocessor\t: 3\n"
	if n := countProcessors([]byte(arm)); n != 4 {
		t.Errorf("arm64 cpuinfo: %d processors, want 4", n)
	}
}

func TestParseMeminfo(t *testing.T) {
	b, err := os.ReadFile("testdata/host/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	if m := parseMeminfo(b); m != (meminfo{total: 24731708, available: 23396880}) {
		t.Errorf("got %+v", m)
	}
	old := "MemTotal: 2048000 kB\nMemFree: 100000 kB\nBuffers: 20000 kB\nCached: 300000 kB\n"
	if m := parseMeminfo([]byte(old)); m != (meminfo{total: 2048000, available: 420000}) {
		t.Errorf("kernel without MemAvailable: got %+v", m)
	}
}

func TestCPUPercent(t *testing.T) {
	tests := []struct {
		name      string
		prev, cur cpuTimes
		want      float64
	}{
		{"half busy", cpuTimes{1000, 500}, cpuTimes{2000, 1000}, 50},
		{"rounded to 2 decimals", cpuTimes{0, 0}, cpuTimes{300, 200}, 33.33},
		{"idle", cpuTimes{1000, 500}, cpuTimes{1100, 600}, 0},
		{"busy", cpuTimes{1000, 500}, cpuTimes{1100, 500}, 100},
		{"no time passed", cpuTimes{1000, 500}, cpuTimes{1000, 500}, 0},
		{"counters went back", cpuTimes{1000, 500}, cpuTimes{900, 400}, 0},
		{"iowait went back", cpuTimes{1000, 500}, cpuTimes{1100, 490}, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cpuPercent(tt.prev, tt.cur); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseCPUTimes(t *testing.T) {
	b, err := os.ReadFile("testdata/proc/stat-1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseCPUTimes(b)
	if err != nil {
		t.Fatal(err)
	}
	// user+nice+system+idle+iowait+irq+softirq+steal; guest is in user.
	want := cpuTimes{total: 323342 + 120 + 69293 + 431034 + 2074 + 0 + 3895 + 775, idle: 431034 + 2074}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "intr 1 2 3\n", "cpu  1 2\n", "cpu  1 x 3 4 5\n"} {
		if _, err := parseCPUTimes([]byte(bad)); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

func TestParseNetDev(t *testing.T) {
	b, err := os.ReadFile("testdata/host/proc/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseNetDev(b)
	if err != nil {
		t.Fatal(err)
	}
	if m["eth0"] != (ifCounters{rx: 677757703, tx: 3259089}) || m["lo"].rx != 594192432 || len(m) != 15 {
		t.Errorf("got %+v", m)
	}
	if _, err := parseNetDev([]byte("Inter-|\n face |\n  eth0: 1 2 3\n")); err == nil {
		t.Error("no error for a short line")
	}
}

func TestCountedIfaces(t *testing.T) {
	cur := map[string]ifCounters{"lo": {}, "eth0": {}, "eth1": {}, "bond0": {}, "eth0.100": {}, "wg0": {},
		"docker0": {}, "br-5e5549a6e785": {}, "veth8cb057e": {}, "ifb0": {}}
	tests := []struct {
		name    string
		cur     map[string]ifCounters
		virtual map[string]bool
		want    []string
	}{
		{"bare metal: physical only", cur,
			map[string]bool{"lo": true, "bond0": true, "eth0.100": true, "wg0": true, "docker0": true, "br-5e5549a6e785": true, "veth8cb057e": true, "ifb0": true},
			[]string{"eth0", "eth1"}},
		{"no sysfs: by name", cur, nil, []string{"bond0", "eth0", "eth0.100", "eth1", "wg0"}},
		{"container VPS: everything virtual", map[string]ifCounters{"lo": {}, "eth0": {}, "docker0": {}, "veth1": {}},
			map[string]bool{"lo": true, "eth0": true, "docker0": true, "veth1": true}, []string{"eth0"}},
		{"OpenVZ venet", map[string]ifCounters{"lo": {}, "venet0": {}}, map[string]bool{"lo": true, "venet0": true}, []string{"venet0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := countedIfaces(tt.cur, tt.virtual)
			var names []string
			for n := range got {
				names = append(names, n)
			}
			if !sameSet(names, tt.want) {
				t.Errorf("got %v, want %v", names, tt.want)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, s := range a {
		m[s] = true
	}
	for _, s := range b {
		if !m[s] {
			return false
		}
	}
	return true
}

func TestSamplerDeltas(t *testing.T) {
	root := t.TempDir()
	install(t, root, "proc/meminfo", "testdata/host/proc/meminfo")
	install(t, root, "sys/devices/virtual/net/lo/ifindex", "testdata/host/sys/devices/virtual/net/lo/ifindex")
	install(t, root, "sys/devices/virtual/net/docker0/ifindex", "testdata/host/sys/devices/virtual/net/docker0/ifindex")
	install(t, root, "sys/devices/virtual/net/ifb0/ifindex", "testdata/host/sys/devices/virtual/net/ifb0/ifindex")
	install(t, root, "sys/devices/virtual/net/vethbb6b342/ifindex", "testdata/host/sys/devices/virtual/net/vethbb6b342/ifindex")
	install(t, root, "proc/stat", "testdata/proc/stat-1")
	install(t, root, "proc/net/dev", "testdata/proc/net-dev-1")

	s := NewSampler(root, fakeStatfs(40*gibibyte, 30*gibibyte))
	at := time.Date(2026, 11, 26, 18, 0, 10, 0, time.FixedZone("CET", 3600))

	install(t, root, "proc/stat", "testdata/proc/stat-2")
	install(t, root, "proc/net/dev", "testdata/proc/net-dev-2")
	got, err := s.Sample(at)
	if err != nil {
		t.Fatal(err)
	}
	// stat-1 → stat-2: 2000 ticks, 1100 of them idle or iowait. guest (100)
	// is already in user and must not count twice.
	// net-dev-1 → 2: only eth0 counts (lo, ifb0, docker0 and the veth are
	// virtual): +150000 in, +40000 out.
	want := wire.Sample{At: at.UTC(), CPUPercent: 45, RAMUsedMB: (24731708 - 23396880) / 1024, RAMTotalMB: 24731708 / 1024,
		DiskUsedGB: 10, DiskTotalGB: 40, NetInBytes: ptr(int64(150000)), NetOutBytes: ptr(int64(40000))}
	checkSample(t, "second reading", got, want)

	// stat unchanged: no time passed, 0%. eth0's counters were reset (rx
	// went from 503473100 to 1200: count 1200) and ens4 appeared (count
	// from zero).
	install(t, root, "proc/net/dev", "testdata/proc/net-dev-3")
	got, err = s.Sample(at.Add(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want.At = at.Add(10 * time.Second).UTC()
	want.CPUPercent = 0
	want.NetInBytes, want.NetOutBytes = ptr(int64(1200+300)), ptr(int64(2891960-2831960+400))
	checkSample(t, "after a counter reset", got, want)
}

func TestSamplerUnprimed(t *testing.T) {
	root := t.TempDir()
	install(t, root, "proc/meminfo", "testdata/host/proc/meminfo")
	s := NewSampler(root, fakeStatfs(10*gibibyte, 10*gibibyte)) // no /proc/stat, no /proc/net/dev yet
	install(t, root, "proc/stat", "testdata/proc/stat-1")
	install(t, root, "proc/net/dev", "testdata/proc/net-dev-1")
	first, err := s.Sample(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if first.CPUPercent != 0 || first.NetInBytes != nil || first.NetOutBytes != nil {
		t.Errorf("first sample without a prior reading: %+v", first)
	}
	install(t, root, "proc/stat", "testdata/proc/stat-2")
	install(t, root, "proc/net/dev", "testdata/proc/net-dev-2")
	second, err := s.Sample(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// No sysfs here, so interfaces are told apart by name: eth0 and ifb0
	// (an ifb mirrors another interface, so it is left out too).
	if second.CPUPercent != 45 || second.NetInBytes == nil || *second.NetInBytes != 150000 || *second.NetOutBytes != 40000 {
		t.Errorf("second sample: cpu %v, in %v, out %v", second.CPUPercent, deref(second.NetInBytes), deref(second.NetOutBytes))
	}
}

func TestSamplerErrors(t *testing.T) {
	s := NewSampler(t.TempDir(), func(string) (uint64, uint64, error) { return 0, 0, errors.New("statfs broke") })
	got, err := s.Sample(time.Now())
	if err == nil {
		t.Fatal("no error from an empty root")
	}
	for _, what := range []string{"stat", "meminfo", "net/dev", "statfs broke"} {
		if !strings.Contains(err.Error(), what) {
			t.Errorf("error does not mention %s: %v", what, err)
		}
	}
	if got.At.IsZero() || got.RAMTotalMB != 0 {
		t.Errorf("partial sample: %+v", got)
	}
}

func checkSample(t *testing.T, name string, got, want wire.Sample) {
	t.Helper()
	if got.At != want.At || got.CPUPercent != want.CPUPercent || got.RAMUsedMB != want.RAMUsedMB || got.RAMTotalMB != want.RAMTotalMB ||
		got.DiskUsedGB != want.DiskUsedGB || got.DiskTotalGB != want.DiskTotalGB ||
		deref(got.NetInBytes) != deref(want.NetInBytes) || deref(got.NetOutBytes) != deref(want.NetOutBytes) ||
		(got.NetInBytes == nil) != (want.NetInBytes == nil) {
		t.Errorf("%s:\n got %+v in=%v out=%v\nwant %+v in=%v out=%v", name,
			got, deref(got.NetInBytes), deref(got.NetOutBytes), want, deref(want.NetInBytes), deref(want.NetOutBytes))
	}
}

func ptr[T any](v T) *T { return &v }

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestRealHost(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	h, err := ReadHost("/", "test")
	if err != nil {
		t.Fatalf("ReadHost(/): %v (%+v)", err, h)
	}
	if h.Hostname == "" || h.Kernel == "" || h.CPUCores <= 0 || h.RAMMB <= 0 || h.BootTime.IsZero() || h.Arch != runtime.GOARCH {
		t.Errorf("ReadHost(/) = %+v", h)
	}
	t.Logf("host: %+v", h)

	s := NewSampler("/", nil)
	if _, err := s.Sample(time.Now()); err != nil {
		t.Fatal(err)
	}
	busy := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(busy) { // give the CPU counters something to count
	}
	got, err := s.Sample(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got.CPUPercent < 0 || got.CPUPercent > 100 || got.RAMTotalMB <= 0 || got.RAMUsedMB <= 0 ||
		got.RAMUsedMB > got.RAMTotalMB || got.DiskUsedGB > got.DiskTotalGB || got.NetInBytes == nil || *got.NetInBytes < 0 {
		t.Errorf("Sample on / = %+v", got)
	}
	t.Logf("sample: %+v in=%v out=%v", got, deref(got.NetInBytes), deref(got.NetOutBytes))
}

func sample(i int) wire.Sample {
	return wire.Sample{At: time.Unix(int64(i), 0).UTC(), CPUPercent: float64(i)}
}

func cpus(ss []wire.Sample) []int {
	out := make([]int, len(ss))
	for i, s := range ss {
		out[i] = int(s.CPUPercent)
	}
	return out
}

func TestBuffer(t *testing.T) {
	b := NewBuffer(3)
	if got := b.Take(10); len(got) != 0 || b.Len() != 0 {
		t.Fatalf("empty buffer: %v", got)
	}
	for i := 1; i <= 5; i++ {
		b.Add(sample(i))
	}
	if b.Len() != 3 || b.Dropped() != 2 {
		t.Fatalf("Len %d Dropped %d, want 3 and 2", b.Len(), b.Dropped())
	}
	if got := cpus(b.Take(2)); !equalInts(got, []int{3, 4}) {
		t.Errorf("Take(2) = %v, want the oldest: [3 4]", got)
	}
	if got := cpus(b.Take(10)); !equalInts(got, []int{3, 4, 5}) {
		t.Errorf("Take(10) = %v, want [3 4 5]", got)
	}
	b.Drop(2) // pushed 3 and 4
	if got := cpus(b.Take(10)); !equalInts(got, []int{5}) || b.Len() != 1 {
		t.Errorf("after Drop(2): %v", got)
	}
	b.Drop(10)
	if b.Len() != 0 {
		t.Errorf("Drop(10) left %d", b.Len())
	}
	// Wrapping around the ring keeps the order.
	for i := 6; i <= 13; i++ {
		b.Add(sample(i))
		if i%2 == 0 {
			b.Take(1)
			b.Drop(1)
		}
	}
	if got := cpus(b.Take(10)); !equalInts(got, []int{11, 12, 13}) {
		t.Errorf("after wrapping: %v", got)
	}
	// A Take returns copies.
	batch := b.Take(1)
	batch[0].CPUPercent = 99
	if got := cpus(b.Take(1)); got[0] != 11 {
		t.Errorf("Take shares memory with the buffer")
	}
}

func TestBufferFillsDuringPush(t *testing.T) {
	b := NewBuffer(4)
	for i := 1; i <= 4; i++ {
		b.Add(sample(i))
	}
	batch := b.Take(3) // 1 2 3 go to the panel...
	b.Add(sample(5))   // ...while new samples push 1 and 2 out
	b.Add(sample(6))
	b.Drop(len(batch)) // the push succeeded
	// Only 3 was left of the batch: 4, 5 and 6 were never pushed and stay.
	if got := cpus(b.Take(10)); !equalInts(got, []int{4, 5, 6}) {
		t.Errorf("got %v, want [4 5 6]", got)
	}
	if b.Dropped() != 2 {
		t.Errorf("Dropped = %d, want 2", b.Dropped())
	}
	b.Take(1)
	for i := 7; i <= 20; i++ { // the whole batch and more pushed out
		b.Add(sample(i))
	}
	b.Drop(1)
	if got := cpus(b.Take(10)); !equalInts(got, []int{17, 18, 19, 20}) {
		t.Errorf("got %v, want [17 18 19 20]", got)
	}
}

func TestBufferConcurrent(t *testing.T) {
	b := NewBuffer(100)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				b.Add(sample(w*1000 + i))
			}
		})
	}
	wg.Go(func() {
		for range 1000 {
			batch := b.Take(10)
			b.Drop(len(batch))
			_ = b.Len()
			_ = b.Dropped()
		}
	})
	wg.Wait()
	if b.Len() > 100 {
		t.Errorf("Len %d over capacity", b.Len())
	}
	small := NewBuffer(0) // holds one all the same
	small.Add(sample(1))
	small.Add(sample(2))
	if got := cpus(small.Take(5)); !equalInts(got, []int{2}) || small.Dropped() != 1 {
		t.Errorf("capacity 0: %v, dropped %d", got, small.Dropped())
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStatfs(t *testing.T) {
	total, free, err := Statfs("/")
	if err != nil {
		t.Fatal(err)
	}
	if total == 0 || free > total {
		t.Errorf("Statfs(/) = %d, %d", total, free)
	}
	if _, _, err := Statfs("/no/such/dir"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Statfs of a missing path: %v", err)
	}
}
