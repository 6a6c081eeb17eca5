package pin

import (
	"crypto/tls"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func TestPeerAcceptsOnlyThePinnedCertificate(t *testing.T) {
	certA, keyA, err := SelfSigned("agent", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certB, _, err := SelfSigned("agent", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certA, keyA); err != nil {
		t.Fatalf("SelfSigned made an unusable pair: %v", err)
	}
	derA, derB := der(t, certA), der(t, certB)
	fpA, err := FingerprintPEM(certA)
	if err != nil || fpA != Fingerprint(derA) || len(fpA) != 64 || strings.ToLower(fpA) != fpA {
		t.Fatalf("FingerprintPEM = %q, %v", fpA, err)
	}
	check := Peer(fpA)
	if err := check([][]byte{derA}, nil); err != nil {
		t.Errorf("the pinned certificate was refused: %v", err)
	}
	for name, raw := range map[string][][]byte{
		"another certificate with the same name": {derB},
		"no certificate":                         nil,
		"the pinned one second in the chain":     {derB, derA},
	} {
		if err := check(raw, nil); err == nil {
			t.Errorf("%s was accepted", name)
		}
	}
	if err := Peer("")([][]byte{derA}, nil); err == nil {
		t.Error("an empty pin accepted a certificate")
	}
	if _, err := FingerprintPEM([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")); err == nil {
		t.Error("FingerprintPEM took a key for a certificate")
	}
	if _, err := FingerprintPEM([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")); err == nil {
		t.Error("FingerprintPEM took garbage for a certificate")
	}
}

func der(t *testing.T, certPEM []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM block")
	}
	return b.Bytes
}
