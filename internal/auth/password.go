package auth

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"upanel/internal/apperr"
)

// Argon2id parameters: OWASP's recommended minimum is m=19 MiB, t=2, p=1. Each
// hash holds m of memory while it runs, which is why Hasher bounds how many run
// at once.
const (
	argonMemory  = 19 * 1024 // KiB
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Password length limits, in characters.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 256
)

// Hasher hashes and verifies passwords with argon2id. It lets at most a few
// hashes run at once, so a burst of logins costs queueing, not gigabytes.
type Hasher struct {
	sem   chan struct{}
	dummy string // verified against when an account does not exist
}

// dummyHash is verified against when an account does not exist. No password
// matches it, but checking one costs a full argon2id run at the real
// parameters, like a real account. It is a constant so that building a Hasher
// does not itself spend 19 MiB at start.
var dummyHash = fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
	base64.RawStdEncoding.EncodeToString(make([]byte, argonSaltLen)), base64.RawStdEncoding.EncodeToString(make([]byte, argonKeyLen)))

// NewHasher returns a hasher running at most concurrency hashes at once.
func NewHasher(concurrency int) *Hasher {
	return &Hasher{sem: make(chan struct{}, max(concurrency, 1)), dummy: dummyHash}
}

// hashWait bounds how long a sign-in waits for a hashing slot: under a flood,
// answering "busy" beats queueing everyone, admins included, for minutes.
const hashWait = 5 * time.Second

func (h *Hasher) acquire(ctx context.Context) error {
	t := time.NewTimer(hashWait)
	defer t.Stop()
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return apperr.New(apperr.Unavailable, "the panel is busy checking passwords: try again in a moment")
	}
}

func (h *Hasher) release() { <-h.sem }

// Hash returns the PHC-style encoding of an argon2id hash of password.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	return h.hash(password), nil
}

func (h *Hasher) hash(password string) string {
	salt := make([]byte, argonSaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// Verify reports whether password matches encoded. An empty encoded (no such
// account) still costs a full hash, so timing does not tell whether an email
// has an account.
func (h *Hasher) Verify(ctx context.Context, encoded, password string) (bool, error) {
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	if encoded == "" {
		encoded = h.dummy
		h.verify(encoded, password)
		return false, nil
	}
	return h.verify(encoded, password), nil
}

func (h *Hasher) verify(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var version int
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || m > 1<<22 || t == 0 || t > 16 || p == 0 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || len(want) > 128 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

//go:embed common-passwords.txt.gz
var commonPasswords []byte

// CheckPassword applies the password rules and says plainly which one failed:
// 12 to 256 characters, not a common password (or one with digits and symbols
// tacked on), not mostly the email address, and not one repeated character or
// an obvious run.
func CheckPassword(password, email string) error {
	n := utf8.RuneCountInString(password)
	switch {
	case !utf8.ValidString(password):
		return apperr.New(apperr.Invalid, "the password is not valid text")
	case n < MinPasswordLen:
		return apperr.New(apperr.Invalid, "the password must be at least %d characters long (it has %d)", MinPasswordLen, n)
	case n > MaxPasswordLen:
		return apperr.New(apperr.Invalid, "the password must be at most %d characters long", MaxPasswordLen)
	}
	for _, r := range password {
		if unicode.IsControl(r) {
			return apperr.New(apperr.Invalid, "the password must not contain control characters")
		}
	}
	lower := strings.ToLower(password)
	if tooCloseToEmail(lower, strings.ToLower(email)) {
		return apperr.New(apperr.Invalid, "the password is too close to your email address")
	}
	if monotonous(lower) {
		return apperr.New(apperr.Invalid, "the password is a repeated or sequential pattern; choose something less predictable")
	}
	base := strings.TrimRightFunc(lower, func(r rune) bool { return unicode.IsDigit(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) })
	if isCommon(lower) || (utf8.RuneCountInString(base) >= 4 && isCommon(base)) {
		return apperr.New(apperr.Invalid, "this password is on the list of commonly used passwords; choose another")
	}
	return nil
}

// tooCloseToEmail reports whether the password is mostly the email address:
// with the local part and the domain's labels taken out, fewer than 8
// characters are left.
func tooCloseToEmail(password, email string) bool {
	local, domain, ok := strings.Cut(email, "@")
	if !ok {
		return false
	}
	rest, used := password, false
	for _, part := range append([]string{local}, strings.Split(domain, ".")...) {
		if len(part) >= 4 && strings.Contains(rest, part) {
			rest, used = strings.ReplaceAll(rest, part, ""), true
		}
	}
	return used && utf8.RuneCountInString(rest) < 8
}

// monotonous catches "aaaaaaaaaaaa", "abcabcabcabc" and "123456789012".
func monotonous(s string) bool {
	rs := []rune(s)
	for period := 1; period <= 4 && period*3 <= len(rs); period++ {
		repeats := true
		for i := period; i < len(rs); i++ {
			if rs[i] != rs[i-period] {
				repeats = false
				break
			}
		}
		if repeats {
			return true
		}
	}
	step := true
	for i := 1; i < len(rs); i++ {
		if d := rs[i] - rs[i-1]; d != 1 && d != -1 && !(rs[i-1] == '9' && rs[i] == '0') {
			step = false
			break
		}
	}
	return step
}

// isCommon scans the embedded list. It runs only when a password is set, so
// the list is decompressed on demand instead of held in memory.
func isCommon(s string) bool {
	zr, err := gzip.NewReader(bytes.NewReader(commonPasswords))
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		if sc.Text() == s {
			return true
		}
	}
	return false
}
