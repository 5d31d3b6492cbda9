//go:build !invariants

package rowengine

// invariantsOn is false in normal builds: see invariants_on.go.
const invariantsOn = false
