package deploy

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"upanel/internal/apperr"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func pemOf(t *testing.T, key any, passphrase string) string {
	t.Helper()
	var b *pem.Block
	var err error
	if passphrase != "" {
		b, err = ssh.MarshalPrivateKeyWithPassphrase(key, "test", []byte(passphrase))
	} else {
		b, err = ssh.MarshalPrivateKey(key, "test")
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(b))
}

// checkKeyPair checks that a stored private key and the shown public key
// belong together.
func checkKeyPair(t *testing.T, privPEM, pubLine string) {
	t.Helper()
	signer, err := ssh.ParsePrivateKey([]byte(privPEM))
	if err != nil {
		t.Fatalf("stored key does not parse: %v", err)
	}
	pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(pubLine))
	if err != nil {
		t.Fatalf("public key %q: %v", pubLine, err)
	}
	if string(pub.Marshal()) != string(signer.PublicKey().Marshal()) || comment != keyComment {
		t.Fatalf("public key %q does not match the private key", pubLine)
	}
	if !strings.HasPrefix(privPEM, "-----BEGIN OPENSSH PRIVATE KEY-----") {
		t.Fatalf("not stored as OpenSSH PEM: %.40q", privPEM)
	}
}

func TestCredentialKinds(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			f := newFixture(t, d)
			ctx := context.Background()

			// Generated: the public key is shown, the private key stored sealed.
			gen, err := f.svc.CreateCredential(ctx, f.p, CredentialInput{Name: "deploy key", Type: store.GitSSHKey, Generate: true}, f.m)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(gen.PublicKey, "ssh-ed25519 ") {
				t.Fatalf("generated public key %q", gen.PublicKey)
			}
			sec, err := f.db.GitCredentialSecret(ctx, gen.ID)
			if err != nil {
				t.Fatal(err)
			}
			checkKeyPair(t, sec.PrivateKey, gen.PublicKey)
			for _, l := range secretValues(sec)[1:] {
				storetest.AssertNotStored(t, f.db, f.url, l)
			}

			// Pasted keys of each supported type.
			_, edKey, _ := ed25519.GenerateKey(rand.Reader)
			ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				t.Fatal(err)
			}
			pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}))
			for name, text := range map[string]string{"ed25519": pemOf(t, edKey, ""), "ecdsa": pemOf(t, ecKey, ""), "rsa pkcs1": pkcs1,
				"crlf": strings.ReplaceAll(pemOf(t, edKey, ""), "\n", "\r\n")} {
				c, err := f.svc.CreateCredential(ctx, f.p, CredentialInput{Name: name, Type: store.GitSSHKey, PrivateKey: text}, f.m)
				if err != nil {
					t.Fatalf("paste %s: %v", name, err)
				}
				s, _ := f.db.GitCredentialSecret(ctx, c.ID)
				checkKeyPair(t, s.PrivateKey, c.PublicKey)
			}

			// Refused keys, with messages that say what to do.
			weak, err := rsa.GenerateKey(rand.Reader, 1024)
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name string
				in   CredentialInput
				text string
			}{
				{"passphrase", CredentialInput{Type: store.GitSSHKey, PrivateKey: pemOf(t, edKey, "hunter2")}, "passphrase"},
				{"weak rsa", CredentialInput{Type: store.GitSSHKey, PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(weak)}))}, "2048"},
				{"garbage", CredentialInput{Type: store.GitSSHKey, PrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nnope\n-----END OPENSSH PRIVATE KEY-----"}, "not an OpenSSH"},
				{"public key", CredentialInput{Type: store.GitSSHKey, PrivateKey: gen.PublicKey}, "not an OpenSSH"},
				{"nothing", CredentialInput{Type: store.GitSSHKey}, "paste the private key"},
				{"both", CredentialInput{Type: store.GitSSHKey, Generate: true, PrivateKey: pemOf(t, edKey, "")}, "not both"},
				{"ssh with token", CredentialInput{Type: store.GitSSHKey, Generate: true, Token: "x"}, "ssh_key credential takes"},
				{"no token", CredentialInput{Type: store.GitToken}, "needs the token"},
				{"token with space", CredentialInput{Type: store.GitToken, Token: "a b"}, "printable ASCII"},
				{"token with newline", CredentialInput{Type: store.GitToken, Token: "ab\ncd"}, "printable ASCII"},
				{"token with password", CredentialInput{Type: store.GitToken, Token: "abc", Password: "x"}, "takes a token"},
				{"token with key", CredentialInput{Type: store.GitToken, Token: "abc", Generate: true}, "takes a token"},
				{"bad username", CredentialInput{Type: store.GitToken, Token: "abc", Username: "-u"}, "user name"},
				{"colon username", CredentialInput{Type: store.GitBasic, Username: "a:b", Password: "p"}, "user name"},
				{"basic without user", CredentialInput{Type: store.GitBasic, Password: "p"}, "needs a user name"},
				{"basic without password", CredentialInput{Type: store.GitBasic, Username: "u"}, "needs a password"},
				{"password with newline", CredentialInput{Type: store.GitBasic, Username: "u", Password: "a\nb"}, "line breaks"},
				{"unknown type", CredentialInput{Type: "gpg"}, "must be one of"},
				{"known_hosts on a token", CredentialInput{Type: store.GitToken, Token: "abc", KnownHosts: knownHostsFor(t, "h.example")}, "ssh_key"},
				{"bad known_hosts", CredentialInput{Type: store.GitSSHKey, Generate: true, KnownHosts: "github.com not-a-key"}, "line 1"},
				{"known_hosts control", CredentialInput{Type: store.GitSSHKey, Generate: true, KnownHosts: "a\x1b[2J ssh-ed25519 AAAA"}, "control"},
			} {
				if tc.in.Name == "" {
					tc.in.Name = tc.name
				}
				_, err := f.svc.CreateCredential(ctx, f.p, tc.in, f.m)
				if !apperr.Is(err, apperr.Invalid) || !strings.Contains(apperr.MessageOf(err), tc.text) {
					t.Errorf("%s: %v, want an invalid-input error mentioning %q", tc.name, err, tc.text)
				}
			}

			// Token and basic credentials.
			tok, err := f.svc.CreateCredential(ctx, f.p, CredentialInput{Name: "gh", Type: store.GitToken, Token: "ghp_tokencanary000111", Host: "github.com"}, f.m)
			if err != nil || tok.PublicKey != "" {
				t.Fatalf("token: %+v %v", tok, err)
			}
			basic, err := f.svc.CreateCredential(ctx, f.p, CredentialInput{Name: "gitea", Type: store.GitBasic, Username: "bot", Password: "pw canary 123!", Host: "https://gitea.example.test:3000/org/repo.git"}, f.m)
			if err != nil {
				t.Fatal(err)
			}
			if s, _ := f.db.GitCredentialSecret(ctx, basic.ID); s.Username != "bot" || s.Secret != "pw canary 123!" {
				t.Fatalf("basic secret %+v", s)
			}
			text := f.allActivityText()
			for _, leak := range []string{"ghp_tokencanary000111", "pw canary 123!", "PRIVATE KEY"} {
				if strings.Contains(text, leak) {
					t.Errorf("the activity log holds %q", leak)
				}
			}
			storetest.AssertNotStored(t, f.db, f.url, "ghp_tokencanary000111")
			storetest.AssertNotStored(t, f.db, f.url, "pw canary 123!")
			acts := f.activity("GitCredential", tok.ID)
			if len(acts) != 1 || acts[0].Action != "created" || !acts[0].Changes["credentials"].Secret || acts[0].UserID != f.p.User.ID {
				t.Fatalf("token activity %+v", acts)
			}

			// Rotation replaces the secret; the log says so without it.
			newTok := "ghp_rotatedcanary222"
			up, err := f.svc.UpdateCredential(ctx, f.p, tok.ID, CredentialPatch{Token: &newTok}, f.m)
			if err != nil || up.Name != "gh" {
				t.Fatalf("rotate: %+v %v", up, err)
			}
			if s, _ := f.db.GitCredentialSecret(ctx, tok.ID); s.Secret != newTok {
				t.Fatal("the token was not replaced")
			}
			acts = f.activity("GitCredential", tok.ID)
			if last := acts[len(acts)-1]; last.Description != "git credential gh: secret replaced" || !last.Changes["credentials"].Secret {
				t.Fatalf("rotate activity %+v", last)
			}
			if strings.Contains(f.allActivityText(), newTok) {
				t.Fatal("the new token is in the activity log")
			}
			oldPub := gen.PublicKey
			regen, err := f.svc.UpdateCredential(ctx, f.p, gen.ID, CredentialPatch{Generate: true}, f.m)
			if err != nil || regen.PublicKey == oldPub || !strings.HasPrefix(regen.PublicKey, "ssh-ed25519 ") {
				t.Fatalf("regenerate: %+v %v", regen, err)
			}
			empty := ""
			if _, err := f.svc.UpdateCredential(ctx, f.p, basic.ID, CredentialPatch{Password: &empty}, f.m); !apperr.Is(err, apperr.Invalid) {
				t.Fatalf("a basic credential without its user name: %v", err)
			}
			bad := "x y"
			if _, err := f.svc.UpdateCredential(ctx, f.p, tok.ID, CredentialPatch{Token: &bad}, f.m); !apperr.Is(err, apperr.Invalid) {
				t.Fatalf("bad token: %v", err)
			}
			if s, _ := f.db.GitCredentialSecret(ctx, tok.ID); s.Secret != newTok {
				t.Fatal("a refused rotation changed the token")
			}
			if _, err := f.svc.UpdateCredential(ctx, f.p, store.NewID(), CredentialPatch{Name: &bad}, f.m); !apperr.Is(err, apperr.NotFound) {
				t.Fatalf("update of nothing: %v", err)
			}
		})
	}
}

func TestCredentialFitsRepository(t *testing.T) {
	f := newFixture(t, "sqlite")
	ctx := context.Background()
	kh := knownHostsFor(t, "git.example.com") + "\n# a comment\n\n" + knownHostsFor(t, "[git.example.com]:2222")
	key, err := f.svc.CreateCredential(ctx, f.p, CredentialInput{Name: "key", Type: store.GitSSHKey, Generate: true, KnownHosts: kh}, f.m)
	if err != nil {
		t.Fatal(err)
	}
	if len(KnownHostKeys(key.KnownHosts)) != 2 || strings.Contains(key.KnownHosts, "#") {
		t.Fatalf("known_hosts stored as %q", key.KnownHosts)
	}
	bare, err := f.svc.CreateCredential(ctx, f.p, CredentialInput{Name: "bare", Type: store.GitSSHKey, Generate: true}, f.m)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := f.svc.CreateCredential(ctx, f.p, CredentialInput{Name: "tok", Type: store.GitToken, Token: "t0ken-value", Host: "git.example.com"}, f.m)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	create := func(repo, cred string) error {
		n++
		_, _, err := f.svc.CreateApp(ctx, f.p, AppInput{ServerID: f.serverID, Name: "app", Slug: "app-" + strings.Repeat("x", n),
			GitRepository: repo, GitCredentialsID: cred}, f.m)
		return err
	}
	for _, tc := range []struct {
		repo, cred string
		text       string // "" for accepted
	}{
		{"git@git.example.com:o/r.git", key.ID, ""},
		{"ssh://git@git.example.com:2222/o/r.git", key.ID, ""},
		{"ssh://git@git.example.com:2200/o/r.git", key.ID, "has no key for git.example.com"},
		{"git@other.example.com:o/r.git", key.ID, "has no key for other.example.com"},
		{"git@git.example.com:o/r.git", bare.ID, "no known_hosts yet"},
		{"git@git.example.com:o/r.git", tok.ID, "needs an ssh_key credential"},
		{"git@git.example.com:o/r.git", "", "needs an ssh_key git credential"},
		{"https://git.example.com/o/r.git", key.ID, "is an SSH key"},
		{"https://git.example.com/o/r.git", tok.ID, ""},
		{"https://git.example.com/o/r.git", "", ""},
		{"https://git.example.com/o/r.git", store.NewID(), "does not exist"},
	} {
		err := create(tc.repo, tc.cred)
		switch {
		case tc.text == "" && err != nil:
			t.Errorf("%s with %s: %v", tc.repo, tc.cred, err)
		case tc.text != "" && (!apperr.Is(err, apperr.Invalid) || !strings.Contains(apperr.MessageOf(err), tc.text)):
			t.Errorf("%s with %s: %v, want %q", tc.repo, tc.cred, err, tc.text)
		}
	}
	// known_hosts cannot be taken away from a credential an ssh app uses, and
	// a credential in use cannot be deleted.
	empty := ""
	if _, err := f.svc.UpdateCredential(ctx, f.p, key.ID, CredentialPatch{KnownHosts: &empty}, f.m); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("emptying known_hosts in use: %v", err)
	}
	if c, _ := f.db.GetGitCredential(ctx, key.ID); c.KnownHosts != key.KnownHosts {
		t.Fatal("a refused update changed known_hosts")
	}
	err = f.svc.DeleteCredential(ctx, f.p, key.ID, f.m)
	if !apperr.Is(err, apperr.Conflict) || !strings.Contains(apperr.MessageOf(err), "app") {
		t.Fatalf("delete in use: %v", err)
	}
	apps, _ := f.db.ListApps(ctx, "")
	for _, a := range apps {
		if err := f.svc.DeleteApp(ctx, f.p, a.ID, f.m); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.svc.DeleteCredential(ctx, f.p, key.ID, f.m); err != nil {
		t.Fatal(err)
	}
	acts := f.activity("GitCredential", key.ID)
	if last := acts[len(acts)-1]; last.Action != "deleted" || last.UserID != f.p.User.ID {
		t.Fatalf("delete activity %+v", last)
	}
	if err := f.svc.DeleteCredential(ctx, f.p, key.ID, f.m); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestMasked(t *testing.T) {
	sec := store.GitSecret{Username: "bot", Secret: "p@ss w/rd"}
	vals := secretValues(sec)
	for _, in := range []string{"auth failed for p@ss w/rd", "https://bot:p%40ss+w%2Frd@h/x", "https://bot:p@ss%20w%2Frd@h",
		"Authorization: Basic Ym90OnBAc3Mgdy9yZA=="} {
		if got := Masked(in, vals); strings.Contains(got, "ss w") || strings.Contains(got, "Ym90OnBAc3Mgdy9yZA==") || strings.Contains(got, "p%40ss") {
			t.Errorf("Masked(%q) = %q", in, got)
		}
	}
	if got := Masked("abc", []string{"abc"}); got != "abc" {
		t.Errorf("short values are not masked: %q", got)
	}
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	s, _, err := marshalKey(k)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Split(s.PrivateKey, "\n")[1]
	if got := Masked("key: "+line, secretValues(s)); strings.Contains(got, line) {
		t.Errorf("a private key line survived: %q", got)
	}
}

func TestTestRefusesBeforeCallingAnAgent(t *testing.T) {
	f := newFixture(t, "sqlite")
	ctx := context.Background()
	bare, err := f.svc.CreateCredential(ctx, f.p, CredentialInput{Name: "bare", Type: store.GitSSHKey, Generate: true}, f.m)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cred, server, repo, branch, text string
		code                             apperr.Code
	}{
		{bare.ID, f.serverID, "ext::sh", "main", "transports", apperr.Invalid},
		{bare.ID, f.serverID, "git@h.example:o/r", "-x", "branch", apperr.Invalid},
		{bare.ID, f.serverID, "git@h.example:o/r", "main", "no known_hosts", apperr.Invalid},
		{bare.ID, store.NewID(), "git@h.example:o/r", "main", "server does not exist", apperr.Invalid},
		{store.NewID(), f.serverID, "https://h.example/o/r", "", "not found", apperr.NotFound},
		{"", f.serverID, "https://h.example/o/r", "", "cannot reach agents", apperr.Unavailable},
	} {
		_, err := f.svc.Test(ctx, f.p, tc.cred, tc.server, tc.repo, tc.branch, f.m)
		if !apperr.Is(err, tc.code) || !strings.Contains(apperr.MessageOf(err), tc.text) {
			t.Errorf("Test(%s, %s): %v, want %s %q", tc.repo, tc.branch, err, tc.code, tc.text)
		}
	}
}
