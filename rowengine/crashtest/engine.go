package crashtest

import (
	"errors"

	"github.com/rowfs/rowfs/rowengine"
)

// Engine drives a pool directly, as the FUSE layer would.
type Engine struct{ P *rowengine.Pool }

func (e Engine) CreateVolume(name string, size uint64) error {
	_, err := e.P.CreateVolume(name, size)
	return err
}

func (e Engine) DeleteVolume(name string) error {
	_, err := e.P.DeleteVolume(name, false)
	return err
}

func (e Engine) withHandle(volume string, fn func(h *rowengine.Handle) error) error {
	h, err := e.P.OpenVolume(volume, true)
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h)
}

func (e Engine) WriteAt(volume string, data []byte, off int64) error {
	return e.withHandle(volume, func(h *rowengine.Handle) error {
		_, err := h.WriteAt(data, off)
		return err
	})
}

func (e Engine) WriteAtSync(volume string, data []byte, off int64) error {
	return e.withHandle(volume, func(h *rowengine.Handle) error {
		_, err := h.WriteAtSync(data, off)
		return err
	})
}

func (e Engine) Discard(volume string, off, length int64) error {
	return e.withHandle(volume, func(h *rowengine.Handle) error { return h.ZeroRange(off, uint64(length)) })
}

func (e Engine) Sync(volume string) error {
	return e.withHandle(volume, func(h *rowengine.Handle) error { return h.Sync() })
}

func (e Engine) Snapshot(volume, name string) error {
	_, err := e.P.CreateSnapshot(volume, name, rowengine.SnapshotOptions{})
	return err
}

func (e Engine) Rollback(volume, snap string) error {
	_, err := e.P.RollbackVolume(volume, snap, false)
	return err
}

func (e Engine) DeleteSnapshot(volume, snap string) error {
	_, err := e.P.DeleteSnapshot(volume, snap, rowengine.DeleteOptions{})
	return err
}

func (e Engine) Clone(volume, snap, name string) error {
	_, err := e.P.CloneVolume(volume, snap, name)
	return err
}

func (e Engine) Flatten(volume string) error {
	_, err := e.P.FlattenVolume(volume)
	if errors.Is(err, rowengine.ErrInvalidArgument) {
		return nil // it shares nothing any more (its origin merged into it)
	}
	return err
}

func (e Engine) Volumes() ([]string, error) {
	var out []string
	for _, v := range e.P.Volumes() {
		out = append(out, v.Name)
	}
	return out, nil
}

func (e Engine) Snapshots(volume string) ([]string, error) {
	infos, err := e.P.Snapshots(volume)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range infos {
		if !s.Head && !s.Hidden {
			out = append(out, s.Name)
		}
	}
	return out, nil
}

func (e Engine) ReadVolume(volume string) ([]byte, error) {
	h, err := e.P.OpenVolume(volume, false)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return readAll(h)
}

func (e Engine) ReadSnapshot(volume, snap string) ([]byte, error) {
	h, err := e.P.OpenSnapshot(volume, snap)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return readAll(h)
}

func readAll(h *rowengine.Handle) ([]byte, error) {
	buf := make([]byte, h.Size())
	_, err := h.ReadAt(buf, 0)
	return buf, err
}
