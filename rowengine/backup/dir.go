package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// dirTarget keeps objects as files under a directory (a local disk or an
// NFS mount). A Put writes a temporary file, fsyncs it, renames it into
// place and fsyncs the directory: after a crash an object is whole or
// absent, and temporary files (".tmp-*") are never listed.
type dirTarget struct {
	root    string
	timeout time.Duration
}

func newDirTarget(root string, timeout time.Duration) (*dirTarget, error) {
	return &dirTarget{root: filepath.Clean(root), timeout: timeout}, nil
}

func (d *dirTarget) String() string { return "dir://" + d.root }

func (d *dirTarget) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || slices.Contains(strings.Split(key, "/"), "..") {
		return "", fmt.Errorf("%w: object key %q", ErrInvalid, key)
	}
	return filepath.Join(d.root, filepath.FromSlash(key)), nil
}

func (d *dirTarget) Put(ctx context.Context, key string, data []byte) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	return withDeadline(ctx, d.timeout, "writing "+key, d, func(context.Context) error {
		dir := filepath.Dir(p)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return d.fail("create directory", err)
		}
		f, err := os.CreateTemp(dir, ".tmp-*")
		if err != nil {
			return d.fail("write "+key, err)
		}
		tmp := f.Name()
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, p)
		}
		if err != nil {
			os.Remove(tmp)
			return d.fail("write "+key, err)
		}
		return d.fail("sync directory", syncDir(dir))
	})
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// fail wraps a filesystem error; a full target is said so plainly.
func (d *dirTarget) fail(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOSPC):
		return fmt.Errorf("%w %s: %s: the target is full (ENOSPC)", ErrTarget, d, what)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s: %s", ErrNotFound, d, what)
	}
	return fmt.Errorf("%w %s: %s: %v", ErrTarget, d, what, err)
}

func (d *dirTarget) Get(ctx context.Context, key string) ([]byte, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	return withDeadlineValue(ctx, d.timeout, "reading "+key, d, func(context.Context) ([]byte, error) {
		data, err := os.ReadFile(p)
		return data, d.fail("read "+key, err)
	})
}

func (d *dirTarget) List(ctx context.Context, prefix string) ([]string, error) {
	return withDeadlineValue(ctx, d.timeout, "listing "+prefix, d, func(context.Context) ([]string, error) {
		var out []string
		base := filepath.Join(d.root, filepath.FromSlash(prefix))
		err := filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if e.IsDir() || strings.HasPrefix(e.Name(), ".tmp-") {
				return nil
			}
			rel, err := filepath.Rel(d.root, p)
			if err != nil {
				return err
			}
			out = append(out, filepath.ToSlash(rel))
			return nil
		})
		slices.Sort(out)
		return out, d.fail("list "+prefix, err)
	})
}

func (d *dirTarget) Delete(ctx context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	return withDeadline(ctx, d.timeout, "deleting "+key, d, func(context.Context) error {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return d.fail("delete "+key, err)
		}
		return nil
	})
}
