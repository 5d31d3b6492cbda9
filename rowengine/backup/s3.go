package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// s3Target keeps objects in an S3 bucket under a prefix (Ceph RGW,
// MinIO, AWS). An object PUT is atomic: readers see it whole or not at all.
type s3Target struct {
	client         *minio.Client
	bucket, prefix string
	endpoint       string
	region         string
	timeout        time.Duration
}

func newS3Target(bucket, prefix string, opts TargetOptions) (*s3Target, error) {
	if opts.Endpoint == "" {
		return nil, fmt.Errorf("%w: s3://%s needs an endpoint (--endpoint host:port)", ErrInvalid, bucket)
	}
	if opts.AccessKey == "" || opts.SecretKey == "" {
		return nil, fmt.Errorf("%w: s3://%s needs credentials: set s3_access_key and s3_secret_key in the config, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in rowfsd's environment", ErrInvalid, bucket)
	}
	region := opts.Region
	if region == "" {
		region = "us-east-1"
	}
	client, err := minio.New(opts.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(opts.AccessKey, opts.SecretKey, ""),
		Secure: !opts.Insecure, Region: region, BucketLookup: minio.BucketLookupPath,
		// One attempt: the deadline, not retries, bounds a call.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: s3 endpoint %s: %v", ErrInvalid, opts.Endpoint, err)
	}
	return &s3Target{client: client, bucket: bucket, prefix: prefix, endpoint: opts.Endpoint, timeout: opts.Timeout, region: region}, nil
}

// prepare makes the bucket if there is none, when the repository's first
// point is written (as restic's init does).
func (s *s3Target) prepare(ctx context.Context) error {
	return withDeadline(ctx, s.timeout, "making bucket "+s.bucket, s, func(ctx context.Context) error {
		ok, err := s.client.BucketExists(ctx, s.bucket)
		if err != nil {
			return s.fail("look for bucket "+s.bucket, err)
		}
		if ok {
			return nil
		}
		return s.fail("make bucket "+s.bucket, s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s.region}))
	})
}

func (s *s3Target) String() string {
	return "s3://" + strings.TrimSuffix(s.bucket+"/"+s.prefix, "/") + " at " + s.endpoint
}

func (s *s3Target) key(k string) string {
	if s.prefix == "" {
		return k
	}
	return s.prefix + "/" + k
}

// fail wraps an S3 error with what was tried; credentials never appear.
func (s *s3Target) fail(what string, err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.Code == "NoSuchKey":
		return fmt.Errorf("%w: %s: %s", ErrNotFound, s, what)
	case resp.Code == "InvalidAccessKeyId" || resp.Code == "SignatureDoesNotMatch" || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w %s: %s: access denied (%s): check the S3 credentials", ErrTarget, s, what, resp.Code)
	case resp.Code == "NoSuchBucket":
		return fmt.Errorf("%w %s: %s: no bucket %s", ErrTarget, s, what, s.bucket)
	}
	return fmt.Errorf("%w %s: %s: %v", ErrTarget, s, what, err)
}

func (s *s3Target) Put(ctx context.Context, key string, data []byte) error {
	return withDeadline(ctx, s.timeout, "writing "+key, s, func(ctx context.Context) error {
		_, err := s.client.PutObject(ctx, s.bucket, s.key(key), bytes.NewReader(data), int64(len(data)),
			minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true})
		return s.fail("write "+key, err)
	})
}

func (s *s3Target) Get(ctx context.Context, key string) ([]byte, error) {
	return withDeadlineValue(ctx, s.timeout, "reading "+key, s, func(ctx context.Context) ([]byte, error) {
		obj, err := s.client.GetObject(ctx, s.bucket, s.key(key), minio.GetObjectOptions{})
		if err != nil {
			return nil, s.fail("read "+key, err)
		}
		defer obj.Close()
		data, err := io.ReadAll(obj)
		return data, s.fail("read "+key, err)
	})
}

func (s *s3Target) List(ctx context.Context, prefix string) ([]string, error) {
	return withDeadlineValue(ctx, s.timeout, "listing "+prefix, s, func(ctx context.Context) ([]string, error) {
		var out []string
		strip := s.key("")
		for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.key(prefix), Recursive: true}) {
			if minio.ToErrorResponse(obj.Err).Code == "NoSuchBucket" {
				return nil, nil // made with the first point: nothing stored yet
			}
			if obj.Err != nil {
				return nil, s.fail("list "+prefix, obj.Err)
			}
			out = append(out, strings.TrimPrefix(obj.Key, strip))
		}
		slices.Sort(out)
		return out, nil
	})
}

func (s *s3Target) Delete(ctx context.Context, key string) error {
	return withDeadline(ctx, s.timeout, "deleting "+key, s, func(ctx context.Context) error {
		err := s.client.RemoveObject(ctx, s.bucket, s.key(key), minio.RemoveObjectOptions{})
		if err := s.fail("delete "+key, err); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return nil
	})
}
