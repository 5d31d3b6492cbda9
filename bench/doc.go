// Package bench holds rowfs's benchmarks: Go micro-benchmarks live beside
// the code they measure; this directory has the end-to-end fio harness
// (fiobench) and the go-fuse passthrough it compares against
// (passthrough). `make bench` runs them; `make test` never does.
package bench
