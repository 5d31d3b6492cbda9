// Package ctl is the control API client and the rowctl command tree
// (cobra). It links only the standard library, cobra and ctl/api: no
// engine, FUSE or Ceph code (a test checks it).
//
// # Exit codes
//
// Exit codes are chosen only in exitcodes.go and are a stable contract for
// scripts; docs/cli.md lists them.
//
// # Concurrency
//
// A command runs once per process; the Client is safe for concurrent use.
//
// # Errors
//
// Daemon errors arrive as *api.Error with a stable Code; a daemon that
// cannot be reached gives ErrUnreachable; bad command-line input gives
// ErrUsage.
package ctl
