package secret

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Source says where the app keys come from. Exactly one of Key and File is used:
// an explicit key in the environment wins, then an explicit file, then the
// default file in the data dir, which is created on first start.
type Source struct {
	Key          string // UPANEL_APP_KEY
	PreviousKeys string // UPANEL_APP_PREVIOUS_KEYS, comma separated
	File         string // UPANEL_APP_KEY_FILE, or the data dir's app.key
	Create       bool   // create File if it does not exist (the data dir default only)
}

// FromFile reports whether the keys live in a file that UPanel may rewrite.
func (s Source) FromFile() bool { return s.Key == "" }

// Load reads the keys and returns the keyring.
func Load(src Source) (*Keyring, error) {
	keys, err := src.keys()
	if err != nil {
		return nil, err
	}
	return NewKeyring(keys[0], keys[1:]...)
}

func (s Source) keys() ([]Key, error) {
	if s.Key != "" {
		active, err := ParseKey(s.Key)
		if err != nil {
			return nil, fmt.Errorf("UPANEL_APP_KEY: %w", err)
		}
		keys := []Key{active}
		for _, p := range strings.Split(s.PreviousKeys, ",") {
			if strings.TrimSpace(p) == "" {
				continue
			}
			k, err := ParseKey(p)
			if err != nil {
				return nil, fmt.Errorf("UPANEL_APP_PREVIOUS_KEYS: %w", err)
			}
			keys = append(keys, k)
		}
		return keys, nil
	}
	if s.File == "" {
		return nil, errors.New("secret: no app key configured")
	}
	if s.Create {
		if err := createKeyFile(s.File); err != nil {
			return nil, err
		}
	}
	return ReadKeyFile(s.File, s.Create)
}

// ReadKeyFile reads a key file: one "base64:..." key per line, the active key
// first, blank lines and # comments ignored. strict demands mode 0600, which is
// what UPanel creates; a file an operator provides may also be group-readable
// (systemd credentials, secret mounts) but never world-readable or writable by others.
func ReadKeyFile(path string, strict bool) ([]Key, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("app key file: %w", err)
	}
	mode := info.Mode().Perm()
	bad := mode&0o026 != 0 || mode&0o004 != 0
	if strict {
		bad = mode&0o077 != 0
	}
	if bad {
		return nil, fmt.Errorf("app key file %s has mode %04o: it must be readable only by its owner (chmod 600 %s)", path, mode, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("app key file: %w", err)
	}
	var keys []Key
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "APP_KEY=")
		k, err := ParseKey(line)
		if err != nil {
			return nil, fmt.Errorf("app key file %s line %d: %w", path, n, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("app key file %s holds no key", path)
	}
	return keys, nil
}

const keyFileHeader = `# UPanel app keys. The first key encrypts new secrets; the others are kept
# only to decrypt data that "upanel key rotate" has not re-encrypted yet.
# Losing this file loses every secret in the database: back it up apart from it.
`

// WriteKeyFile replaces path atomically with keys, the first one active.
func WriteKeyFile(path string, keys []Key) error {
	if len(keys) == 0 {
		return errors.New("secret: refusing to write an empty key file")
	}
	var b strings.Builder
	b.WriteString(keyFileHeader)
	for _, k := range keys {
		b.WriteString(k.Encode())
		b.WriteByte('\n')
	}
	tmp, err := writeTemp(path, []byte(b.String()))
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("app key file: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// createKeyFile makes a new key file unless one exists. It links a complete
// temporary file into place, so a crash never leaves an empty key file and two
// processes starting at once agree on one key.
func createKeyFile(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("app key file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("app key file: %w", err)
	}
	k, err := GenerateKey()
	if err != nil {
		return err
	}
	tmp, err := writeTemp(path, []byte(keyFileHeader+k.Encode()+"\n"))
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("app key file: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func writeTemp(path string, data []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".app.key-*")
	if err != nil {
		return "", fmt.Errorf("app key file: %w", err)
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", fmt.Errorf("app key file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("app key file: %w", err)
	}
	return name, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("app key file: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("app key file: sync %s: %w", dir, err)
	}
	return nil
}

// ReadKeys returns the configured keys, the active one first. Rotation
// uses it to add a key in front and later drop unused ones.
func (s Source) ReadKeys() ([]Key, error) { return s.keys() }

// AppendKeyFile adds keys to the end of a key file, creating it (0600) if
// needed; rotation keeps retired keys this way for restoring old backups.
func AppendKeyFile(path string, keys []Key) error {
	var existing []Key
	if _, err := os.Stat(path); err == nil {
		if existing, err = ReadKeyFile(path, true); err != nil {
			return err
		}
	}
	all := append([]Key(nil), existing...)
	for _, k := range keys {
		if !slices.ContainsFunc(all, func(e Key) bool { return e.ID() == k.ID() }) {
			all = append(all, k)
		}
	}
	if len(all) == 0 {
		return nil
	}
	return WriteKeyFile(path, all)
}
