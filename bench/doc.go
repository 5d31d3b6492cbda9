// Package bench holds rowfs's benchmarks: Go micro-benchmarks live beside
// the code they measure; this directory has the end-to-end harness that
// compares rowfs with its peers (peers: fio, snapshot operations, memory),
// the go-fuse passthrough it uses as a ceiling (passthrough), and the
// engine-level snapshot figures without FUSE (snapbench). `make bench` runs
// peers; `make test` never runs any of them.
package bench
