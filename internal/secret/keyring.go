// Package secret encrypts UPanel's secret columns. One keyring serves every
// encrypted column so that there is exactly one place where keys, nonces and
// additional data are handled.
//
// A ciphertext is the text "v1:<kid>:<base64(nonce|sealed)>". The key id is part of
// the text so that rotation can find what still uses an old key with a plain
// LIKE, and the additional data binds each ciphertext to its table, column and row,
// so a value copied into another row or column fails to decrypt.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// KeySize is the AES-256 key length.
const KeySize = 32

const (
	keyPrefix = "base64:"
	version   = "v1"
)

// ErrUnknownKey means the ciphertext was written with a key the keyring lacks.
var ErrUnknownKey = errors.New("secret: ciphertext uses a key that is not configured")

// ErrDecrypt means authentication failed: a wrong key with a colliding id, a
// tampered value, or a value moved to another row or column.
var ErrDecrypt = errors.New("secret: decryption failed")

// Key is one AES-256 key. Its String form is the seed's APP_KEY format.
type Key struct {
	raw []byte
	id  string
}

// GenerateKey returns a new random key.
func GenerateKey() (Key, error) {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return Key{}, fmt.Errorf("secret: generate key: %w", err)
	}
	return newKey(raw), nil
}

// ParseKey parses "base64:<32 bytes in standard base64>".
func ParseKey(s string) (Key, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, keyPrefix) {
		return Key{}, errors.New(`secret: an app key must look like "base64:<44 characters>" (make one with "upanel key generate")`)
	}
	raw, err := base64.StdEncoding.DecodeString(s[len(keyPrefix):])
	if err != nil {
		return Key{}, errors.New("secret: the app key is not valid base64")
	}
	if len(raw) != KeySize {
		return Key{}, fmt.Errorf("secret: the app key must be %d bytes, got %d", KeySize, len(raw))
	}
	return newKey(raw), nil
}

func newKey(raw []byte) Key {
	// The id is derived from the key so that every process computes the same id
	// for the same key, and a different key gets a different id; it reveals
	// nothing about the key beyond a 32-bit tag.
	m := hmac.New(sha256.New, raw)
	m.Write([]byte("upanel key id v1"))
	return Key{raw: raw, id: hex.EncodeToString(m.Sum(nil)[:4])}
}

// ID is the key's public identifier, 8 hex digits.
func (k Key) ID() string { return k.id }

// Encode returns the key in "base64:..." form: the secret itself. Only "key
// generate", the key file writer and the log redactor call it.
func (k Key) Encode() string { return keyPrefix + base64.StdEncoding.EncodeToString(k.raw) }

// String names the key without revealing it, so a key printed with %v or
// logged by mistake shows only its id.
func (k Key) String() string { return "key:" + k.id }

// LogValue keeps a key out of structured logs the same way.
func (k Key) LogValue() slog.Value { return slog.StringValue("key:" + k.id) }

// Scope names the place a ciphertext belongs to. It is the additional data.
type Scope struct {
	Table, Column, RowID string
}

func (s Scope) aad(kid string) []byte {
	return []byte(version + "\x00" + kid + "\x00" + s.Table + "\x00" + s.Column + "\x00" + s.RowID)
}

// Keyring holds the active key, used to encrypt, and older keys still needed to
// decrypt data that rotation has not reached yet. It is immutable and safe for
// concurrent use.
type Keyring struct {
	active string
	keys   map[string]cipher.AEAD
	order  []string
}

// NewKeyring builds a keyring; the first key is active and the rest are previous keys.
func NewKeyring(active Key, previous ...Key) (*Keyring, error) {
	if len(active.raw) != KeySize {
		return nil, errors.New("secret: no active key")
	}
	kr := &Keyring{active: active.id, keys: map[string]cipher.AEAD{}}
	for _, k := range append([]Key{active}, previous...) {
		if _, dup := kr.keys[k.id]; dup {
			continue
		}
		block, err := aes.NewCipher(k.raw)
		if err != nil {
			return nil, fmt.Errorf("secret: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("secret: %w", err)
		}
		kr.keys[k.id] = aead
		kr.order = append(kr.order, k.id)
	}
	return kr, nil
}

// ActiveID is the id of the key new ciphertexts are written with.
func (kr *Keyring) ActiveID() string { return kr.active }

// IDs lists every key id, the active one first.
func (kr *Keyring) IDs() []string { return append([]string(nil), kr.order...) }

// Has reports whether the keyring can decrypt data written with key id.
func (kr *Keyring) Has(id string) bool { _, ok := kr.keys[id]; return ok }

// Encrypt seals plaintext for scope with the active key.
func (kr *Keyring) Encrypt(plaintext []byte, scope Scope) (string, error) {
	return kr.EncryptWith(kr.active, plaintext, scope)
}

// EncryptWith seals plaintext with a specific key of the ring.
func (kr *Keyring) EncryptWith(kid string, plaintext []byte, scope Scope) (string, error) {
	aead, ok := kr.keys[kid]
	if !ok {
		return "", ErrUnknownKey
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("secret: nonce: %w", err)
	}
	sealed := aead.Seal(nonce, nonce, plaintext, scope.aad(kid))
	return version + ":" + kid + ":" + base64.RawStdEncoding.EncodeToString(sealed), nil
}

// Decrypt opens a ciphertext written for scope.
func (kr *Keyring) Decrypt(ciphertext string, scope Scope) ([]byte, error) {
	kid, body, err := split(ciphertext)
	if err != nil {
		return nil, err
	}
	aead, ok := kr.keys[kid]
	if !ok {
		return nil, fmt.Errorf("%w (key id %s)", ErrUnknownKey, kid)
	}
	sealed, err := base64.RawStdEncoding.DecodeString(body)
	if err != nil || len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrDecrypt
	}
	n := aead.NonceSize()
	plain, err := aead.Open(nil, sealed[:n], sealed[n:], scope.aad(kid))
	if err != nil {
		return nil, ErrDecrypt
	}
	return plain, nil
}

// KeyIDOf returns the key id a ciphertext was written with.
func KeyIDOf(ciphertext string) (string, error) {
	kid, _, err := split(ciphertext)
	return kid, err
}

// Prefix is the text every ciphertext under key id starts with; rotation uses it
// to find rows that still need work.
func Prefix(kid string) string { return version + ":" + kid + ":" }

func split(ciphertext string) (kid, body string, err error) {
	v, rest, ok := strings.Cut(ciphertext, ":")
	if !ok || v != version {
		return "", "", ErrDecrypt
	}
	kid, body, ok = strings.Cut(rest, ":")
	if !ok || len(kid) != 8 {
		return "", "", ErrDecrypt
	}
	return kid, body, nil
}
