package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/rowfs/rowfs/rowengine/backup"
)

// OfflineRestore is rowfsd backup restore: a point written to a raw file
// with no daemon and no pool, so a backup outlives the pool it came from.
type OfflineRestore struct {
	TargetURL, Endpoint, Region, KeyFile string
	Insecure                             bool
	Point, Output                        string
	// Progress, if set, is told the bytes written so far and in all.
	Progress func(done, total uint64)
}

// RestoreToFile restores o.Point into o.Output, a new file (an existing
// one is refused: nothing is overwritten by accident). S3 credentials come
// from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
func RestoreToFile(ctx context.Context, o OfflineRestore) (backup.Manifest, error) {
	target, err := backup.OpenTarget(o.TargetURL, backup.TargetOptions{Endpoint: o.Endpoint, Region: o.Region, Insecure: o.Insecure,
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"), SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY")})
	if err != nil {
		return backup.Manifest{}, err
	}
	repo, err := backup.OpenRepo(ctx, target, o.KeyFile)
	if err != nil {
		return backup.Manifest{}, err
	}
	m, err := repo.Point(ctx, o.Point)
	if err != nil {
		return m, err
	}
	f, err := os.OpenFile(o.Output, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return m, fmt.Errorf("%s exists: restore into a new file", o.Output)
	}
	if err != nil {
		return m, err
	}
	ok := false
	defer func() {
		f.Close()
		if !ok {
			os.Remove(o.Output) // nothing half-written stays
		}
	}()
	if err := f.Truncate(int64(m.Size)); err != nil { // sparse: zero chunks are holes
		return m, err
	}
	_, err = repo.Restore(ctx, o.Point, f, backup.RestoreOptions{Fresh: true, Progress: func(_ int, done, total uint64) {
		if o.Progress != nil {
			o.Progress(done, total)
		}
	}})
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return m, cmp.Or(err, errors.New("restore failed"))
	}
	ok = true
	return m, nil
}
