package rowengine

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/rowfs/rowfs/blockmap"
)

// Settings are a pool's operator settings, kept in its pool record
// (rowctl pool set KEY=VALUE).
type Settings struct {
	// SnapshotBeforeResize takes an automatic snapshot (auto-pre-resize-…)
	// before a volume is resized. Default true.
	SnapshotBeforeResize bool
	// SnapshotBeforeReset takes one (auto-pre-reset-…) before a volume
	// reset. Default true.
	SnapshotBeforeReset bool
	// SnapshotBeforeRollback takes one (auto-pre-rollback-…) before a
	// rollback, keeping what the rollback discards. Default false, as in
	// ZStack.
	SnapshotBeforeRollback bool
}

// SettingKeys are the keys of rowctl pool set, in the order pool info lists them.
var SettingKeys = []string{"snapshot-before-resize", "snapshot-before-reset", "snapshot-before-rollback"}

func settingsFrom(r blockmap.PoolSettings) Settings {
	return Settings{SnapshotBeforeResize: !r.NoSnapshotBeforeResize, SnapshotBeforeReset: !r.NoSnapshotBeforeReset,
		SnapshotBeforeRollback: r.SnapshotBeforeRollback}
}

func (s Settings) record() blockmap.PoolSettings {
	return blockmap.PoolSettings{NoSnapshotBeforeResize: !s.SnapshotBeforeResize, NoSnapshotBeforeReset: !s.SnapshotBeforeReset,
		SnapshotBeforeRollback: s.SnapshotBeforeRollback}
}

// Value is a setting's value as pool info shows it.
func (s Settings) Value(key string) string {
	switch key {
	case "snapshot-before-resize":
		return strconv.FormatBool(s.SnapshotBeforeResize)
	case "snapshot-before-reset":
		return strconv.FormatBool(s.SnapshotBeforeReset)
	case "snapshot-before-rollback":
		return strconv.FormatBool(s.SnapshotBeforeRollback)
	}
	return ""
}

// Settings returns the pool's settings.
func (p *Pool) Settings() Settings {
	p.mapMu.RLock()
	defer p.mapMu.RUnlock()
	return p.settings
}

// SetSetting changes one setting durably. Keys are SettingKeys; values
// true or false.
func (p *Pool) SetSetting(key, value string) (Settings, error) {
	if !slices.Contains(SettingKeys, key) {
		return Settings{}, fmt.Errorf("%w: unknown pool setting %q: settings are %s", ErrInvalidArgument, key, strings.Join(SettingKeys, ", "))
	}
	on, err := strconv.ParseBool(value)
	if err != nil {
		return Settings{}, fmt.Errorf("%w: %s=%q: want true or false", ErrInvalidArgument, key, value)
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	s := p.Settings()
	switch key {
	case "snapshot-before-resize":
		s.SnapshotBeforeResize = on
	case "snapshot-before-reset":
		s.SnapshotBeforeReset = on
	case "snapshot-before-rollback":
		s.SnapshotBeforeRollback = on
	}
	rec, err := p.store.Pool()
	if err != nil {
		return Settings{}, err
	}
	rec.Settings = s.record()
	if err := p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.PutPool(rec) }); err != nil {
		return Settings{}, fmt.Errorf("set %s: %w", key, err)
	}
	p.mapMu.Lock()
	p.settings = s
	p.mapMu.Unlock()
	p.log.Info("pool setting changed", "key", key, "value", on)
	return s, nil
}

// snapshotBefore takes the automatic snapshot kind ("pre-resize" …)
// before a risky operation on k, if the setting on says so; the operation
// does not start if it fails. REQUIRES: adminMu.
func (p *Pool) snapshotBefore(k volumeKind, on bool, kind string) error {
	if !on {
		return nil
	}
	if _, err := k.createSnapshot("", SnapshotOptions{Auto: true, AutoKind: kind}); err != nil {
		return fmt.Errorf("the automatic snapshot before the %s (%s off turns it off): %w", strings.TrimPrefix(kind, "pre-"), "snapshot-before-"+strings.TrimPrefix(kind, "pre-"), err)
	}
	return nil
}
