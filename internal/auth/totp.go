package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"image/png"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP per RFC 6238 with what every authenticator app supports: SHA-1, six
// digits, 30-second steps, and one step of clock skew either way.
const (
	totpPeriod = 30
	totpSkew   = 1
)

var totpOpts = totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// Enrollment is what the user needs to add UPanel to an authenticator app.
type Enrollment struct {
	Secret string // base32, for typing in by hand
	URI    string // otpauth://totp/...
	QRPNG  string // data: URI of a QR code of URI
}

func newEnrollment(issuer, account string) (*Enrollment, error) {
	key, err := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: account, Period: totpPeriod,
		SecretSize: 20, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return nil, err
	}
	e := &Enrollment{Secret: key.Secret(), URI: key.URL()}
	if img, err := key.Image(240, 240); err == nil {
		var b bytes.Buffer
		if png.Encode(&b, img) == nil {
			e.QRPNG = "data:image/png;base64," + base64.StdEncoding.EncodeToString(b.Bytes())
		}
	}
	return e, nil
}

// matchTOTP returns the time step a code is valid for at now, within the skew.
// The caller still has to consume the step, which is what stops replays.
func matchTOTP(secret, code string, now time.Time) (step int64, ok bool) {
	code = strings.ReplaceAll(strings.TrimSpace(code), " ", "")
	if len(code) != 6 {
		return 0, false
	}
	for d := -totpSkew; d <= totpSkew; d++ {
		t := now.Add(time.Duration(d*totpPeriod) * time.Second)
		want, err := totp.GenerateCodeCustom(secret, t, totpOpts)
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return t.Unix() / totpPeriod, true
		}
	}
	return 0, false
}

// RecoveryCodeCount is how many recovery codes a user gets.
const RecoveryCodeCount = 10

// recoveryAlphabet avoids look-alike characters (0/o, 1/l/i).
const recoveryAlphabet = "abcdefghjkmnpqrstuvwxyz23456789"

// newRecoveryCodes returns codes like "k7m2p-x9qrt" (about 49 bits each) and
// the hashes that are stored.
func newRecoveryCodes() (codes, hashes []string) {
	// Bytes at or above the largest multiple of the alphabet size are
	// rejected, so every character is equally likely.
	limit := byte(256 - 256%len(recoveryAlphabet))
	var buf [1]byte
	for range RecoveryCodeCount {
		var s strings.Builder
		for n := 0; n < 10; {
			rand.Read(buf[:])
			if buf[0] >= limit {
				continue
			}
			if n == 5 {
				s.WriteByte('-')
			}
			s.WriteByte(recoveryAlphabet[int(buf[0])%len(recoveryAlphabet)])
			n++
		}
		codes = append(codes, s.String())
		hashes = append(hashes, hashRecoveryCode(s.String()))
	}
	return codes, hashes
}

// hashRecoveryCode normalises what a user types (case, spaces, dashes) and hashes it.
func hashRecoveryCode(code string) string {
	c := strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(strings.TrimSpace(code)))
	return hashToken("recovery:" + c)
}
