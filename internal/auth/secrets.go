package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// newToken returns a random URL-safe secret of 32 bytes (256 bits).
func newToken() string {
	b := make([]byte, 32)
	rand.Read(b) // crypto/rand.Read never fails on Linux (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashToken is how every emailed or bearer secret is stored: SHA-256 is enough
// because the secrets are 256-bit random values, not passwords.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// csrfFor derives a session's CSRF token from its cookie secret, so it needs no
// storage and no one without the cookie can compute it.
func csrfFor(sessionToken string) string {
	m := hmac.New(sha256.New, []byte(sessionToken))
	m.Write([]byte("upanel csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCSRF compares a submitted token with the principal's in constant time.
func CheckCSRF(p *Principal, submitted string) bool {
	return p != nil && p.csrf != "" && hmac.Equal([]byte(p.csrf), []byte(submitted))
}
