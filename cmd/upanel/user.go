package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"upanel/internal/auth"
	"upanel/internal/config"
	"upanel/internal/panel"
)

// accounts opens the accounts service for a command.
func (e *env) accounts(ctx context.Context, cfg config.Config) (*auth.Service, func(), error) {
	svc, _, closeFn, err := panel.Accounts(ctx, cfg, e.logger(cfg), e.redactor)
	return svc, closeFn, err
}

func cmdUserCreate(ctx context.Context, e *env, args []string) error {
	var email, role string
	cfg, help, err := loadConfig(e, "user create", "upanel user create --email E --role admin|operator|viewer [flags] (password on stdin, or generated)", args,
		func(c *config.Config, fs *flag.FlagSet) {
			c.StorageFlags(fs)
			fs.StringVar(&email, "email", "", "the user's email address (required)")
			fs.StringVar(&role, "role", "", "admin, operator or viewer (required)")
		})
	if help || err != nil {
		return err
	}
	if email == "" {
		return usageError{"--email is required"}
	}
	r, err := auth.ParseRole(role)
	if err != nil {
		return usageError{"--role: " + err.Error()}
	}
	password, generated, err := e.readPassword()
	if err != nil {
		return err
	}
	svc, closeFn, err := e.accounts(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	u, err := svc.CreateUser(ctx, email, password, r)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "created %s (%s), id %s\n", u.Email, u.Role, u.ID)
	if generated {
		fmt.Fprintf(e.stdout, "password: %s\n(shown once: store it in a password manager, or change it after signing in)\n", password)
	}
	return nil
}

// readPassword takes the password from a terminal (asked twice, not echoed),
// from piped standard input (the first line), or, when stdin is empty,
// generates one.
func (e *env) readPassword() (password string, generated bool, err error) {
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(e.stderr, "Password (empty to generate one): ")
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil {
			return "", false, fmt.Errorf("read password: %w", err)
		}
		if len(p1) > 0 {
			fmt.Fprint(e.stderr, "Password again: ")
			p2, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(e.stderr)
			if err != nil {
				return "", false, fmt.Errorf("read password: %w", err)
			}
			if string(p1) != string(p2) {
				return "", false, errors.New("the two passwords differ")
			}
			return string(p1), false, nil
		}
	} else if e.stdin != nil {
		line, err := bufio.NewReader(io.LimitReader(e.stdin, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", false, fmt.Errorf("read password from stdin: %w", err)
		}
		if line = strings.TrimRight(line, "\r\n"); line != "" {
			return line, false, nil
		}
	}
	return generatePassword(), true, nil
}

// generatePassword returns 24 characters from an unambiguous alphabet, about
// 118 bits.
func generatePassword() string {
	const alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789"
	limit := byte(256 - 256%len(alphabet))
	var b strings.Builder
	var buf [1]byte
	for b.Len() < 24 {
		rand.Read(buf[:])
		if buf[0] < limit {
			b.WriteByte(alphabet[int(buf[0])%len(alphabet)])
		}
	}
	return b.String()
}

func cmdUserList(ctx context.Context, e *env, args []string) error {
	cfg, help, err := loadConfig(e, "user list", "upanel user list [flags]", args, storageFlags)
	if help || err != nil {
		return err
	}
	svc, closeFn, err := e.accounts(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	users, err := svc.Users(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEMAIL\tROLE\t2FA\tCREATED")
	for _, u := range users {
		tfa := "off"
		if u.TwoFactorEnabled() {
			tfa = "on"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.ID, u.Email, u.Role, tfa, u.CreatedAt.UTC().Format(time.DateTime))
	}
	return tw.Flush()
}

func cmdUserReset2FA(ctx context.Context, e *env, args []string) error {
	cfg, rest, help, err := loadConfigArgs(e, "user reset-2fa", "upanel user reset-2fa [flags] EMAIL", args, 1, storageFlags)
	if help || err != nil {
		return err
	}
	svc, closeFn, err := e.accounts(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	u, err := svc.ResetTwoFactor(ctx, rest[0], auth.Meta{UserAgent: "upanel command line"})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "two-factor authentication is off for %s and their sessions are signed out; they can sign in with their password and enrol again\n", u.Email)
	return nil
}

func cmdTokenCreate(ctx context.Context, e *env, args []string) error {
	var email, name, role string
	var days int
	cfg, help, err := loadConfig(e, "token create", "upanel token create --user E --name N [--role viewer] [--expires-days 90] [flags]", args,
		func(c *config.Config, fs *flag.FlagSet) {
			c.StorageFlags(fs)
			fs.StringVar(&email, "user", "", "email of the token's owner (required)")
			fs.StringVar(&name, "name", "", "a name to recognise the token by (required)")
			fs.StringVar(&role, "role", "", "admin, operator or viewer; at most the owner's role (default: the owner's)")
			fs.IntVar(&days, "expires-days", 0, "days until the token expires; 0 for never")
		})
	if help || err != nil {
		return err
	}
	if email == "" || name == "" {
		return usageError{"--user and --name are required"}
	}
	if days < 0 || days > 5*365 {
		return usageError{"--expires-days must be 0 to 1825"}
	}
	var r auth.Role
	if role != "" {
		if r, err = auth.ParseRole(role); err != nil {
			return usageError{"--role: " + err.Error()}
		}
	}
	svc, closeFn, err := e.accounts(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	raw, t, err := svc.CreateTokenFor(ctx, email, auth.NewToken{Name: name, Role: r, TTL: time.Duration(days) * 24 * time.Hour})
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, raw)
	fmt.Fprintf(e.stderr, "token %s (%s, role %s) created; it is shown only this once\n", t.ID, t.Name, t.Role)
	return nil
}

func cmdUserUnlock(ctx context.Context, e *env, args []string) error {
	cfg, rest, help, err := loadConfigArgs(e, "user unlock", "upanel user unlock [flags] EMAIL", args, 1, storageFlags)
	if help || err != nil {
		return err
	}
	svc, closeFn, err := e.accounts(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	n, err := svc.Unlock(ctx, rest[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "cleared %d failed sign-in attempts of %s\n", n, rest[0])
	return nil
}
