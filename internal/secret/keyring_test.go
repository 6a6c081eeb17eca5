package secret

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func mustKey(t *testing.T) Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	kr, err := NewKeyring(mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	scope := Scope{"servers", "ssh_private_key", "01J0000000000000000000000A"}
	for _, plain := range [][]byte{{}, []byte("x"), bytes.Repeat([]byte("secret"), 10000)} {
		ct, err := kr.Encrypt(plain, scope)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(ct, Prefix(kr.ActiveID())) {
			t.Fatalf("ciphertext %q lacks the key id prefix", ct[:20])
		}
		got, err := kr.Decrypt(ct, scope)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("Decrypt = %q, %v", got, err)
		}
	}
	a, _ := kr.Encrypt([]byte("same"), scope)
	b, _ := kr.Encrypt([]byte("same"), scope)
	if a == b {
		t.Fatal("two encryptions of one plaintext are equal: nonce reuse")
	}
}

// A ciphertext is bound to its table, column and row: moved anywhere else it
// must not decrypt.
func TestCiphertextIsBoundToItsPlace(t *testing.T) {
	kr, _ := NewKeyring(mustKey(t))
	home := Scope{"apps", "env_vars", "01J0000000000000000000000A"}
	ct, _ := kr.Encrypt([]byte(`{"DB_PASSWORD":"x"}`), home)
	for _, elsewhere := range []Scope{
		{"apps", "env_vars", "01J0000000000000000000000B"},
		{"apps", "env_production", home.RowID},
		{"git_credentials", "env_vars", home.RowID},
		{"apps", "env_vars\x00", home.RowID},
	} {
		if _, err := kr.Decrypt(ct, elsewhere); !errors.Is(err, ErrDecrypt) {
			t.Errorf("decrypt in %+v: err = %v, want ErrDecrypt", elsewhere, err)
		}
	}
}

func TestTamperedAndMalformedCiphertexts(t *testing.T) {
	kr, _ := NewKeyring(mustKey(t))
	scope := Scope{"t", "c", "id"}
	ct, _ := kr.Encrypt([]byte("hello"), scope)
	flipped := []byte(ct)
	flipped[len(flipped)-3] ^= 0x01
	for _, bad := range []string{"", "v1", "v1:", "v2:" + ct[3:], "v1:zz:abc", string(flipped), ct[:len(ct)-4], "v1:" + kr.ActiveID() + ":!!!"} {
		if _, err := kr.Decrypt(bad, scope); err == nil {
			t.Errorf("Decrypt(%q) succeeded", bad)
		}
	}
}

func TestWrongKeyAndRotationKeys(t *testing.T) {
	oldKey, newKey := mustKey(t), mustKey(t)
	old, _ := NewKeyring(oldKey)
	scope := Scope{"t", "c", "id"}
	ct, _ := old.Encrypt([]byte("hello"), scope)

	other, _ := NewKeyring(newKey)
	if _, err := other.Decrypt(ct, scope); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("wrong key: err = %v, want ErrUnknownKey", err)
	}
	both, _ := NewKeyring(newKey, oldKey)
	if got, err := both.Decrypt(ct, scope); err != nil || string(got) != "hello" {
		t.Fatalf("previous key: %q, %v", got, err)
	}
	if both.ActiveID() != newKey.ID() || !both.Has(oldKey.ID()) {
		t.Fatal("keyring ids wrong")
	}
	if id, _ := KeyIDOf(ct); id != oldKey.ID() {
		t.Fatalf("KeyIDOf = %s, want %s", id, oldKey.ID())
	}
}

func TestParseKey(t *testing.T) {
	k := mustKey(t)
	got, err := ParseKey(" " + k.Encode() + "\n")
	if err != nil || got.ID() != k.ID() {
		t.Fatalf("ParseKey(String()) = %v, %v", got.ID(), err)
	}
	for _, bad := range []string{"", "base64:", "AAAA", "base64:not base64!", "base64:" + strings.Repeat("A", 40), "hex:00"} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
	secretPart := k.Encode()[len("base64:"):]
	for _, shown := range []string{k.String(), k.LogValue().String(), fmt.Sprintf("%v %+v %s", k, k, k)} {
		if strings.Contains(shown, secretPart) {
			t.Fatalf("the key shows itself: %q", shown)
		}
	}
}

func TestDefaultKeyFileIsCreatedOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	src := Source{File: filepath.Join(dir, "app.key"), Create: true}
	kr1, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(src.File)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %o, want 600", info.Mode().Perm())
	}
	kr2, err := Load(src)
	if err != nil || kr2.ActiveID() != kr1.ActiveID() {
		t.Fatalf("second load: %v, %v (the file must be reused, not replaced)", kr2, err)
	}
	if err := os.Chmod(src.File, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(src); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key file accepted: %v", err)
	}
}

// Two processes starting on an empty data dir at once must end up with one key.
func TestConcurrentFirstStartAgreesOnOneKey(t *testing.T) {
	src := Source{File: filepath.Join(t.TempDir(), "app.key"), Create: true}
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			kr, err := Load(src)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = kr.ActiveID()
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("processes disagree on the key: %v", ids)
		}
	}
}

func TestKeyFileRoundTripAndEnvSource(t *testing.T) {
	a, b := mustKey(t), mustKey(t)
	path := filepath.Join(t.TempDir(), "app.key")
	if err := WriteKeyFile(path, []Key{a, b}); err != nil {
		t.Fatal(err)
	}
	keys, err := ReadKeyFile(path, true)
	if err != nil || len(keys) != 2 || keys[0].ID() != a.ID() || keys[1].ID() != b.ID() {
		t.Fatalf("ReadKeyFile = %v, %v", keys, err)
	}
	kr, err := Load(Source{Key: a.Encode(), PreviousKeys: " " + b.Encode() + " ,"})
	if err != nil || kr.ActiveID() != a.ID() || !kr.Has(b.ID()) {
		t.Fatalf("env source: %v", err)
	}
	if _, err := Load(Source{Key: "base64:short"}); err == nil || !strings.Contains(err.Error(), "UPANEL_APP_KEY") {
		t.Fatalf("bad env key: %v", err)
	}
	if _, err := Load(Source{File: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Fatal("missing explicit key file accepted")
	}
	empty := filepath.Join(t.TempDir(), "empty.key")
	os.WriteFile(empty, []byte("# nothing\n"), 0o600)
	if _, err := Load(Source{File: empty}); err == nil {
		t.Fatal("key file without keys accepted")
	}
}

func FuzzDecrypt(f *testing.F) {
	k, _ := GenerateKey()
	kr, _ := NewKeyring(k)
	ct, _ := kr.Encrypt([]byte("x"), Scope{"t", "c", "i"})
	f.Add(ct)
	f.Add("v1:00000000:AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		kr.Decrypt(s, Scope{"t", "c", "i"}) // must not panic
	})
}
