package rowengine

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/rowfs/rowfs/blockmap"
)

// BackupTarget is a backup target the pool keeps (rowctl backup target
// add). The backups themselves are the daemon's (rowengine/backup).
type BackupTarget = blockmap.BackupTargetRecord

// BackupTargets lists the pool's backup targets, by name.
func (p *Pool) BackupTargets() ([]BackupTarget, error) { return p.store.BackupTargets() }

// SaveBackupTarget adds a target; a name in use is ErrExists.
func (p *Pool) SaveBackupTarget(rec BackupTarget) error {
	if err := ValidateVolumeName(rec.Name); err != nil {
		return fmt.Errorf("%w: target name %q: names are %s", ErrInvalidArgument, rec.Name, NameRule)
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if have, err := p.hasBackupTarget(rec.Name); err != nil || have {
		return cmp.Or(err, fmt.Errorf("%w: backup target %q", ErrExists, rec.Name))
	}
	rec.Created = p.opts.Now().UTC()
	return p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.PutBackupTarget(rec) })
}

// DeleteBackupTarget forgets a target; what it holds stays there.
func (p *Pool) DeleteBackupTarget(name string) error {
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	if have, err := p.hasBackupTarget(name); err != nil || !have {
		return cmp.Or(err, fmt.Errorf("%w: backup target %q", ErrNotFound, name))
	}
	return p.syncedUpdate(func(tx *blockmap.Txn) error { return tx.DeleteBackupTarget(name) })
}

// hasBackupTarget reports a target of that name. REQUIRES: adminMu.
func (p *Pool) hasBackupTarget(name string) (bool, error) {
	all, err := p.store.BackupTargets()
	return slices.ContainsFunc(all, func(t BackupTarget) bool { return t.Name == name }), err
}
