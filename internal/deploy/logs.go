package deploy

import (
	"context"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"upanel/internal/store"
)

// Deployment logs: every line the agent sends is masked (again: the agent
// masks too) and stored in deployments.log, one line per sequence number,
// then announced to live viewers of this process. Viewers read the stored
// log, never the agent, and also poll the database, so a deployment driven
// by another panel process sharing the database shows as quickly.

// maskGlyph replaces a secret in a deployment log, as Masked does.
const maskGlyph = "••••"

// minMasked is the shortest value masked. Shorter env values ("1", "on",
// "dev") carry no secret worth the name, and masking them would garble every
// line they happen to occur in.
const minMasked = 4

// masker replaces the secrets a panel knows of an app in log text: every env
// value of every scope, the git credential's key, token or password, and the
// push-to-deploy secret, also in their URL-escaped forms, and each line of a
// multi-line secret (a PEM key) on its own.
type masker struct {
	values []string // longest first
}

// newMasker masks secrets except values that are public anyway (the
// environment's name, the app's slug, the branch: they appear in paths and
// container names, and masking them would hide nothing).
func newMasker(secrets []string, public []string) *masker {
	pub := map[string]bool{}
	for _, p := range public {
		pub[p] = true
	}
	seen := map[string]bool{}
	m := &masker{}
	add := func(v string) {
		v = strings.TrimSpace(v)
		if len(v) < minMasked || seen[v] || pub[v] {
			return
		}
		seen[v] = true
		m.values = append(m.values, v)
	}
	for _, s := range secrets {
		for _, v := range []string{s, url.QueryEscape(s), url.PathEscape(s)} {
			add(v)
			if strings.Contains(v, "\n") {
				for _, l := range strings.Split(v, "\n") {
					add(l)
				}
			}
		}
	}
	sort.Slice(m.values, func(i, j int) bool { return len(m.values[i]) > len(m.values[j]) })
	return m
}

// mask replaces every known secret in s.
func (m *masker) mask(s string) string {
	if m == nil {
		return s
	}
	for _, v := range m.values {
		if strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, maskGlyph)
		}
	}
	return s
}

// ansiRe matches terminal escape sequences: CSI (colours, cursor moves), OSC
// (titles, links) and two-character escapes.
var ansiRe = regexp.MustCompile("\x1b\\[[0-?]*[ -/]*[@-~]|\x1b\\][^\x07\x1b]*(\x07|\x1b\\\\)|\x1b[@-Z\\\\-_]")

// cleanLine makes an agent's line one line of plain text: escape sequences
// removed, what a terminal would show after a carriage return, other control
// characters but tabs dropped, invalid UTF-8 replaced.
func cleanLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.IndexByte(s, 0x1b) >= 0 {
		s = ansiRe.ReplaceAllString(s, "")
	}
	s = strings.TrimRight(s, "\r\n")
	if i := strings.LastIndexByte(s, '\r'); i >= 0 {
		if rest := s[i+1:]; strings.TrimSpace(rest) != "" {
			s = rest
		}
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t':
			return r
		case r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return -1
		}
		return r
	}, s)
}

// logBroker wakes the live viewers of a deployment's log in this process
// when lines were stored or the deployment ended.
type logBroker struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

func newLogBroker() *logBroker { return &logBroker{subs: map[string]map[chan struct{}]struct{}{}} }

// subscribe returns a channel that receives (at most one pending) wake-up
// whenever the deployment's log grows, and the function that ends it.
func (b *logBroker) subscribe(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	b.mu.Lock()
	if b.subs[id] == nil {
		b.subs[id] = map[chan struct{}]struct{}{}
	}
	b.subs[id][ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		delete(b.subs[id], ch)
		if len(b.subs[id]) == 0 {
			delete(b.subs, id)
		}
		b.mu.Unlock()
	}
}

func (b *logBroker) notify(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs[id] {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// LogLine is a stored line of a deployment's log and its number (from 1).
type LogLine struct {
	Seq  int
	Text string
}

// splitLog cuts a stored log into its lines; the log ends with a newline.
func splitLog(log string) []string {
	if log == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(log, "\n"), "\n")
}

// LogFollower reads a deployment's stored log as it grows.
type LogFollower struct {
	s      *Service
	id     string
	seq    int // the number of the last line read
	offset int // characters of the stored log read
	wake   <-chan struct{}
	stop   func()
}

// FollowLog returns a follower of a deployment's log, the lines stored after
// line after (0: all of them), and the deployment as it is now. Close the
// follower when done.
func (s *Service) FollowLog(ctx context.Context, id string, after int) (*LogFollower, []LogLine, *store.Deployment, error) {
	// Subscribe before reading, so that no wake-up falls between the two.
	wake, stop := s.logs.subscribe(id)
	d, err := s.DB.GetDeploymentLog(ctx, id)
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	all := splitLog(d.Log)
	f := &LogFollower{s: s, id: id, seq: len(all), offset: utf8.RuneCountInString(d.Log), wake: wake, stop: stop}
	after = max(0, min(after, len(all)))
	lines := make([]LogLine, 0, len(all)-after)
	for i := after; i < len(all); i++ {
		lines = append(lines, LogLine{Seq: i + 1, Text: all[i]})
	}
	d.Log = ""
	return f, lines, d, nil
}

// Wake receives when this process stored lines of the deployment; a viewer
// also calls Next on a timer, for other processes.
func (f *LogFollower) Wake() <-chan struct{} { return f.wake }

// Next returns the lines stored since the last call, and the deployment as
// it is now. Once the deployment is terminal, the lines returned with it are
// the last.
func (f *LogFollower) Next(ctx context.Context) ([]LogLine, *store.Deployment, error) {
	tail, d, err := f.s.DB.DeploymentLogTail(ctx, f.id, f.offset)
	if err != nil {
		return nil, nil, err
	}
	// Lines are stored whole, each with its newline; keep any partial end
	// for the next call all the same.
	if i := strings.LastIndexByte(tail, '\n'); i < 0 {
		tail = ""
	} else {
		tail = tail[:i+1]
	}
	f.offset += utf8.RuneCountInString(tail)
	var out []LogLine
	for _, l := range splitLog(tail) {
		f.seq++
		out = append(out, LogLine{Seq: f.seq, Text: l})
	}
	return out, d, nil
}

// Close ends the follower.
func (f *LogFollower) Close() { f.stop() }
