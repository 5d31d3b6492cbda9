//go:build invariants

package rowengine

// invariantsOn: built with -tags invariants, the engine checks cheap
// invariants at every change (owned-block counters never below zero, a
// queued map change agreeing with the node's table) and records what
// breaks them (Pool.Violations; TestPool's checker fails on any).
const invariantsOn = true
