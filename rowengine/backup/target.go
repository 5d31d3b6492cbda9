package backup

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Target stores a backup repository's objects under slash-separated keys.
// Put makes an object visible whole or not at all (a crash never leaves
// half of one), and durable before it returns. Every call has a deadline
// (TargetOptions.Timeout), so a hung NFS mount or endpoint fails the job,
// never anything else. Get of a missing key wraps ErrNotFound.
type Target interface {
	Put(ctx context.Context, key string, data []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
	// List returns every key under prefix (recursively), sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	Delete(ctx context.Context, key string) error
	// String names the target for messages (never with credentials).
	String() string
}

// TargetOptions configure OpenTarget.
type TargetOptions struct {
	// Timeout bounds each operation. Default 60s.
	Timeout time.Duration
	// Endpoint is an S3 endpoint host:port (s3:// URLs only). Required for S3.
	Endpoint string
	// Region of the S3 bucket. Default "us-east-1" (Ceph RGW's default).
	Region string
	// AccessKey and SecretKey are the S3 credentials; never logged.
	AccessKey, SecretKey string
	// Insecure talks plain HTTP to the endpoint (a test RGW on loopback).
	Insecure bool
}

// OpenTarget opens a target by URL: dir:///path or s3://bucket/prefix.
func OpenTarget(rawURL string, opts TargetOptions) (Target, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: target URL %q: %v", ErrInvalid, rawURL, err)
	}
	switch u.Scheme {
	case "dir":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("%w: target URL %q: want dir:///absolute/path", ErrInvalid, rawURL)
		}
		return newDirTarget(u.Path, opts.Timeout)
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("%w: target URL %q: want s3://bucket/prefix", ErrInvalid, rawURL)
		}
		return newS3Target(u.Host, strings.Trim(u.Path, "/"), opts)
	default:
		return nil, fmt.Errorf("%w: target URL %q: want dir:///path or s3://bucket/prefix", ErrInvalid, rawURL)
	}
}

// withDeadline runs op with the target's timeout; an op that does not
// return in time fails with ErrTarget naming the target and the bound.
func withDeadline(ctx context.Context, timeout time.Duration, what string, t fmt.Stringer, op func(ctx context.Context) error) error {
	_, err := withDeadlineValue(ctx, timeout, what, t, func(ctx context.Context) (struct{}, error) { return struct{}{}, op(ctx) })
	return err
}

// withDeadlineValue is withDeadline for an op with a result. The result
// comes back on the channel only: an op abandoned at the deadline (a hung
// NFS read goes on in its goroutine) writes nothing its caller reads.
func withDeadlineValue[T any](ctx context.Context, timeout time.Duration, what string, t fmt.Stringer, op func(ctx context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := op(ctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return zero, ctx.Err() // the caller gave up (a job ending), not the target
		}
		return zero, fmt.Errorf("%w %s: %s did not finish within %s (a hung mount or endpoint?)", ErrTarget, t, what, timeout)
	}
}
