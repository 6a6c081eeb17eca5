package panel

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"upanel/internal/config"
	"upanel/internal/logging"
	"upanel/internal/secret"
	"upanel/internal/store"
)

// RotateKeys moves every secret onto a new key. With a key file it adds a new
// key in front, re-encrypts in batches, and drops old keys once nothing uses
// them. With UPANEL_APP_KEY the operator supplies the new key and lists the old
// one in UPANEL_APP_PREVIOUS_KEYS, and this re-encrypts.
//
// It is safe to interrupt: every batch commits on its own, the old key stays in
// the file until the end, and running it again resumes the unfinished rotation
// rather than starting another. It refuses to run while serve is up, because a
// running panel keeps using the key it started with.
func RotateKeys(ctx context.Context, cfg config.Config, log *slog.Logger, red *logging.Redactor, out io.Writer, batch int) error {
	db, err := openDB(ctx, &cfg, log, red)
	if err != nil {
		return err
	}
	defer db.Close()
	release, err := db.LockInstance(ctx, true)
	if err != nil {
		return err
	}
	defer release()
	src, err := loadKeys(ctx, db, &cfg, log, red)
	if err != nil {
		return err
	}
	if _, err := db.Migrate(ctx); err != nil {
		return err
	}

	kr := db.Keyring()
	usage, err := db.KeyUsage(ctx)
	if err != nil {
		return err
	}
	stale := 0
	for id, n := range usage {
		if id != kr.ActiveID() {
			stale += n
		}
	}
	switch {
	case stale > 0:
		fmt.Fprintf(out, "resuming: %d secrets still use older keys; re-encrypting them with key %s\n", stale, kr.ActiveID())
	case len(kr.IDs()) > 1:
		// Everything is on the active key but older keys are still
		// configured: an earlier rotation stopped before retiring them.
		fmt.Fprintf(out, "finishing an earlier rotation: every secret uses key %s\n", kr.ActiveID())
	case !src.FromFile():
		fmt.Fprintf(out, "every secret already uses key %s (UPANEL_APP_KEY).\n", kr.ActiveID())
		fmt.Fprintln(out, `To rotate: make a key with "upanel key generate", set it as UPANEL_APP_KEY, move the old key to UPANEL_APP_PREVIOUS_KEYS, and run "upanel key rotate" again.`)
		return nil
	default:
		keys, err := src.ReadKeys()
		if err != nil {
			return err
		}
		fresh, err := secret.GenerateKey()
		if err != nil {
			return err
		}
		red.Add(fresh.Encode())
		keys = append([]secret.Key{fresh}, keys...)
		if err := secret.WriteKeyFile(src.File, keys); err != nil {
			return err
		}
		if kr, err = secret.NewKeyring(keys[0], keys[1:]...); err != nil {
			return err
		}
		db.SetKeyring(kr)
		fmt.Fprintf(out, "added key %s to %s; re-encrypting with it\n", fresh.ID(), src.File)
	}
	if err := db.RegisterActiveKey(ctx); err != nil {
		return err
	}
	n, err := db.ReencryptAll(ctx, batch, func(c store.SecretColumn, done int) {
		log.Info("re-encrypted batch", "column", c.String(), "rows", done)
	})
	if err != nil {
		return fmt.Errorf("rotation stopped after %d secrets (run key rotate again to resume): %w", n, err)
	}
	fmt.Fprintf(out, "re-encrypted %d secrets with key %s\n", n, kr.ActiveID())

	retired, err := db.RetireUnusedKeys(ctx)
	if err != nil {
		return err
	}
	if len(retired) > 0 && src.FromFile() {
		keys, err := src.ReadKeys()
		if err != nil {
			return err
		}
		var gone []secret.Key
		keys = slices.DeleteFunc(keys, func(k secret.Key) bool {
			if slices.Contains(retired, k.ID()) {
				gone = append(gone, k)
				return true
			}
			return false
		})
		// Retired keys are kept apart, not destroyed: database backups taken
		// before the rotation still need them.
		if err := secret.AppendKeyFile(src.File+".retired", gone); err != nil {
			return err
		}
		if err := secret.WriteKeyFile(src.File, keys); err != nil {
			return err
		}
		fmt.Fprintf(out, "removed unused keys %s from %s (kept in %s.retired for old backups)\n", strings.Join(retired, ", "), src.File, src.File)
	} else if len(retired) > 0 {
		fmt.Fprintf(out, "keys %s are no longer used: remove them from UPANEL_APP_PREVIOUS_KEYS\n", strings.Join(retired, ", "))
	}
	return nil
}
