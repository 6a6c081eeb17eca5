package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// state is what the agent keeps across restarts: the sequence number of its
// last message, so the panel's replay check holds after a restart.
type state struct {
	mu   sync.Mutex
	path string
	Seq  uint64 `json:"seq"`
}

func loadState(dir string) (*state, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent state: %w", err)
	}
	s := &state{path: filepath.Join(dir, "state.json")}
	b, err := os.ReadFile(s.path)
	if err == nil {
		if err := json.Unmarshal(b, s); err != nil {
			return nil, fmt.Errorf("agent state %s: %w", s.path, err)
		}
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("agent state: %w", err)
	}
	return s, nil
}

// next returns the next sequence number, written to disk before it is used:
// a crash can skip numbers, never reuse one.
func (s *state) next() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Seq++
	b, _ := json.Marshal(s)
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return s.Seq, os.Rename(tmp, s.path)
}
