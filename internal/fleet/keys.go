package fleet

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// newKeyPair makes the ed25519 key pair UPanel signs in to a server with: the
// private key in OpenSSH PEM (stored encrypted), the public key as an
// authorized_keys line.
func newKeyPair(comment string) (privatePEM []byte, public string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, "", fmt.Errorf("fleet: marshal key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, "", err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " " + comment
	return pem.EncodeToMemory(block), line, nil
}

// parseHostKeys reads authorized_keys-style lines of host public keys,
// refusing anything else; it returns them normalised (type and key, no
// comment).
func parseHostKeys(text string) ([]string, error) {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l))
		if err != nil {
			return nil, fmt.Errorf("not an SSH public key: %.40q", l)
		}
		out = append(out, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))))
		if len(out) > 10 {
			return nil, fmt.Errorf("too many host keys")
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no host keys")
	}
	return out, nil
}

// Fingerprints returns the SHA256 fingerprints of host key lines, as ssh-keygen
// -l prints them, for people to compare.
func Fingerprints(keys []string) []string {
	var out []string
	for _, l := range keys {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l))
		if err == nil {
			out = append(out, k.Type()+" "+ssh.FingerprintSHA256(k))
		}
	}
	return out
}
