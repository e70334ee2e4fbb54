//go:build unix

package pg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// initCacheKey identifies an initdb result: the same binaries with the same
// options produce an interchangeable data directory.
func initCacheKey(ctx context.Context, bins binaries, initArgs []string) (string, error) {
	version, err := exec.CommandContext(ctx, bins.postgres, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bins.postgres, err)
	}
	h := sha256.New()
	for _, part := range append([]string{bins.initdb, bins.postgres, string(version)}, initArgs...) {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	major, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(version)), "postgres (PostgreSQL) "), ".")
	return "pg" + major + "-" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// fillInitCache copies a freshly initialized dataDir to cached. The copy is
// built under a temporary name and renamed into place, so concurrent test
// binaries never see a half-written entry; the loser of a race drops its copy.
func fillInitCache(dataDir, cached string) error {
	if err := os.MkdirAll(filepath.Dir(cached), 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(cached), filepath.Base(cached)+".tmp-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	if err := copyTree(dataDir, filepath.Join(tmp, "data"), nil); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(tmp, "data"), cached); err != nil {
		if _, statErr := os.Stat(filepath.Join(cached, "PG_VERSION")); statErr == nil {
			return nil // another process cached it first
		}
		return err
	}
	return nil
}

// copyTree copies a data directory (directories and regular files only, as
// initdb creates), preserving permissions, owned by owner when not nil.
func copyTree(src, dst string, owner *osUser) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, info.Mode().Perm()); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			if err := copyFile(path, target, info.Mode().Perm()); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected file type %s", path, info.Mode().Type())
		}
		if owner != nil {
			return os.Lchown(target, owner.uid, owner.gid)
		}
		return nil
	})
}

func copyFile(src, dst string, perm fs.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, out.Close()) }()
	_, err = io.Copy(out, in)
	return err
}
