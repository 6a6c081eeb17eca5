package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"upanel/internal/pin"
)

// EnsureCertificate returns the agent's TLS certificate, creating a
// self-signed one (ECDSA P-256, ten years) on first start. The panel pins its
// SHA-256 at install, reading the file over its pinned SSH connection, so no
// CA is involved and nothing is trusted on first use over the network.
func EnsureCertificate(certFile, keyFile string) (tls.Certificate, error) {
	if _, err := os.Stat(certFile); errors.Is(err, fs.ErrNotExist) {
		if err := writeSelfSigned(certFile, keyFile, "upanel-agent"); err != nil {
			return tls.Certificate{}, err
		}
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("agent certificate: %w", err)
	}
	return c, nil
}

func writeSelfSigned(certFile, keyFile, name string) error {
	certPEM, keyPEM, err := pin.SelfSigned(name, 10*365*24*time.Hour)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("agent key: %w", err)
	}
	return os.WriteFile(certFile, certPEM, 0o644)
}
