package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/rowfs/rowfs/ctl/api"
)

var (
	// ErrUnreachable: no daemon answers on the control socket.
	ErrUnreachable = errors.New("rowfsd is not reachable")
	// ErrUsage: the command line is wrong; the message says how.
	ErrUsage = errors.New("usage")
)

// Client talks to rowfsd over its Unix control socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{socket: path, http: &http.Client{Transport: tr, Timeout: 10 * time.Minute}}
}

// do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://rowfsd"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s (is the daemon running? set --socket or %s): %v", ErrUnreachable, c.socket, api.SocketEnv, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		apiErr := &api.Error{}
		if err := json.NewDecoder(resp.Body).Decode(apiErr); err != nil || apiErr.Code == "" {
			return &api.Error{Code: api.CodeInternal, Message: fmt.Sprintf("daemon answered %s", resp.Status)}
		}
		return apiErr
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode daemon answer: %w", err)
	}
	return nil
}

// call is do for a request that answers a T. It exists because
// "return v, c.do(…, &v)" reads v in an order the Go spec leaves open
// (operands that are not calls may be evaluated before the call).
func call[T any](ctx context.Context, c *Client, method, path string, in any) (T, error) {
	var out T
	err := c.do(ctx, method, path, in, &out)
	return out, err
}

func volumePath(name string, suffix string) string {
	return api.PathVolumes + "/" + url.PathEscape(name) + suffix
}

// Version asks the daemon for its version.
func (c *Client) Version(ctx context.Context) (api.VersionInfo, error) {
	return call[api.VersionInfo](ctx, c, http.MethodGet, api.PathVersion, nil)
}

// Pool describes the pool.
func (c *Client) Pool(ctx context.Context) (api.Pool, error) {
	return call[api.Pool](ctx, c, http.MethodGet, api.PathPool, nil)
}

// Volumes lists the volumes.
func (c *Client) Volumes(ctx context.Context) ([]api.Volume, error) {
	l, err := call[api.VolumeList](ctx, c, http.MethodGet, api.PathVolumes, nil)
	return l.Volumes, err
}

// Volume describes one volume.
func (c *Client) Volume(ctx context.Context, name string) (api.Volume, error) {
	return call[api.Volume](ctx, c, http.MethodGet, volumePath(name, ""), nil)
}

// History returns a volume's capacity samples taken from since to until
// (zero times: no bound).
func (c *Client) History(ctx context.Context, name string, since, until time.Time) (api.CapacityHistory, error) {
	q := url.Values{}
	if !since.IsZero() {
		q.Set("since", since.UTC().Format(time.RFC3339))
	}
	if !until.IsZero() {
		q.Set("until", until.UTC().Format(time.RFC3339))
	}
	path := volumePath(name, "/history")
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return call[api.CapacityHistory](ctx, c, http.MethodGet, path, nil)
}

// CreateVolume creates a volume.
func (c *Client) CreateVolume(ctx context.Context, req api.CreateVolumeRequest) (api.Volume, error) {
	return call[api.Volume](ctx, c, http.MethodPost, api.PathVolumes, req)
}

// AttachVolume exposes an existing RBD image as a volume.
func (c *Client) AttachVolume(ctx context.Context, req api.AttachVolumeRequest) (api.Volume, error) {
	return call[api.Volume](ctx, c, http.MethodPost, api.PathVolumeAttach, req)
}

// DetachVolume removes an RBD volume from rowfs and leaves its image.
func (c *Client) DetachVolume(ctx context.Context, name string, force bool) error {
	q := ""
	if force {
		q = "?force=true"
	}
	return c.do(ctx, http.MethodPost, volumePath(name, "/detach"+q), nil, nil)
}

// ResizeVolume changes a volume's size.
func (c *Client) ResizeVolume(ctx context.Context, name string, req api.ResizeVolumeRequest) (api.Volume, error) {
	return call[api.Volume](ctx, c, http.MethodPost, volumePath(name, "/resize"), req)
}

// DeleteVolume deletes a volume; the job, if any, frees its snapshots.
func (c *Client) DeleteVolume(ctx context.Context, name string, force bool) (api.DeleteVolumeResult, error) {
	q := ""
	if force {
		q = "?force=true"
	}
	return call[api.DeleteVolumeResult](ctx, c, http.MethodDelete, volumePath(name, q), nil)
}
