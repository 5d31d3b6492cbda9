package rowengine

// Crash points name the places on the metadata commit paths where a crash
// test stops the engine, as kill -9 or a power cut would (see
// Options.CrashHook). Each sits between two durable steps, where a crash
// leaves the most interesting state.
const (
	CrashAlloc            = "alloc"              // a block allocated, nothing written to it
	CrashRedirect         = "redirect"           // a redirected block written, its map entry not queued
	CrashUnmap            = "unmap"              // a block unmapped in memory, its quarantine pending
	CrashSectors          = "sectors"            // sectors of a partly written block written in place, its wider mask not queued
	CrashSectorsFilled    = "sectors.filled"     // a partly written block's other sectors copied from its base, its whole entry not queued
	CrashCommitDataSynced = "commit.data-synced" // data file synced, map changes not applied
	CrashCommitMapApplied = "commit.map-applied" // map changes applied, not synced
	CrashCommitSynced     = "commit.synced"      // map changes durable, freed blocks not yet reusable
	CrashFreePunched      = "free.punched"       // freed blocks punched out, not yet in the allocator
	CrashSnapshot         = "snapshot"           // snapshot records written, the commit not done
	CrashRollback         = "rollback"           // rollback durable, its job not started
	CrashDeleteHidden     = "delete.hidden"      // snapshots marked deleted, their merge not started
	CrashMergeStep        = "merge.step"         // one merge batch durable
	CrashMergeReparent    = "merge.reparent"     // the merged node's child took its place, its map not purged
	CrashPurge            = "purge"              // a removed node's map entries deleted, not synced
	CrashVolumeCreate     = "volume.create"      // a volume or clone durable, not yet in memory
	CrashVolumeDelete     = "volume.delete"      // a volume's records deleted, its blocks not freed
	CrashFlattenStep      = "flatten.step"       // one flatten batch copied and durable
	CrashFlattenCut       = "flatten.cut"        // a flattened clone detached, its origin not reaped
	CrashJobFinished      = "job.finished"       // a job's result recorded
)

// CrashPoints lists every crash point, for tests that visit them all.
var CrashPoints = []string{
	CrashAlloc, CrashRedirect, CrashUnmap, CrashSectors, CrashSectorsFilled,
	CrashCommitDataSynced, CrashCommitMapApplied, CrashCommitSynced, CrashFreePunched,
	CrashSnapshot, CrashRollback, CrashDeleteHidden, CrashMergeStep, CrashMergeReparent, CrashPurge,
	CrashVolumeCreate, CrashVolumeDelete, CrashFlattenStep, CrashFlattenCut, CrashJobFinished,
}

func (p *Pool) crashPoint(name string) {
	if p.opts.CrashHook != nil {
		p.opts.CrashHook(name)
	}
}
