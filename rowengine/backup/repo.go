package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Repo is a backup repository on a target: its chunks, indexes and
// manifests, read and written with its key (if it is encrypted).
type Repo struct {
	target Target
	keys   *keys
	// gcMu: backups hold it shared, Collect exclusively (see doc.go).
	gcMu sync.RWMutex
}

// repoConfig is the object "rowfs-backup.json" at the target's root,
// written when the first point is: the format, and for an encrypted
// repository a check value of its key.
type repoConfig struct {
	Format    int    `json:"format"`
	ChunkSize int    `json:"chunk_size"`
	Encrypted bool   `json:"encrypted"`
	KeyCheck  string `json:"key_check,omitempty"`
}

const configKey = "rowfs-backup.json"

// OpenRepo opens the repository on target with keyFile ("": none). A
// repository written with a key refuses to open without it or with another.
func OpenRepo(ctx context.Context, target Target, keyFile string) (*Repo, error) {
	r := &Repo{target: target}
	if keyFile != "" {
		k, err := LoadKey(keyFile)
		if err != nil {
			return nil, err
		}
		r.keys = k
	}
	raw, err := target.Get(ctx, configKey)
	switch {
	case errors.Is(err, ErrNotFound):
		return r, nil // new: written with the first point
	case err != nil:
		return nil, err
	}
	var c repoConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: %s on %s: %v", ErrCorrupt, configKey, target, err)
	}
	if c.Format != FormatVersion || c.ChunkSize != ChunkSize {
		return nil, fmt.Errorf("%w: %s holds format %d with %d-byte chunks; this rowfs reads format %d", ErrInvalid, target, c.Format, c.ChunkSize, FormatVersion)
	}
	switch {
	case c.Encrypted && r.keys == nil:
		return nil, fmt.Errorf("%w: %s is encrypted: give its key file (key_file of the target)", ErrKey, target)
	case !c.Encrypted && r.keys != nil:
		return nil, fmt.Errorf("%w: %s is not encrypted, but a key file was given", ErrKey, target)
	case c.Encrypted && c.KeyCheck != r.keys.check():
		return nil, fmt.Errorf("%w: %s was encrypted with another key", ErrKey, target)
	}
	return r, nil
}

// Target is the repository's target.
func (r *Repo) Target() Target { return r.target }

func (r *Repo) writeConfig(ctx context.Context) error {
	if _, err := r.target.Get(ctx, configKey); err == nil {
		return nil
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	if p, ok := r.target.(interface{ prepare(context.Context) error }); ok {
		if err := p.prepare(ctx); err != nil {
			return err
		}
	}
	c := repoConfig{Format: FormatVersion, ChunkSize: ChunkSize, Encrypted: r.keys != nil}
	if r.keys != nil {
		c.KeyCheck = r.keys.check()
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	return r.target.Put(ctx, configKey, b)
}

// Points lists the repository's points, oldest first (manifests only: a
// point without one was never finished and does not exist).
func (r *Repo) Points(ctx context.Context) ([]Manifest, error) {
	keys, err := r.target.List(ctx, "points/")
	if err != nil {
		return nil, err
	}
	var out []Manifest
	for _, k := range keys {
		if !strings.HasSuffix(k, ".json") {
			continue
		}
		m, err := r.manifest(ctx, strings.TrimSuffix(strings.TrimPrefix(k, "points/"), ".json"))
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Manifest) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// Point returns one point's manifest.
func (r *Repo) Point(ctx context.Context, id string) (Manifest, error) {
	if id == "" || strings.ContainsAny(id, "/.") {
		return Manifest{}, fmt.Errorf("%w: point id %q", ErrInvalid, id)
	}
	m, err := r.manifest(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return m, fmt.Errorf("%w: backup point %s on %s", ErrNotFound, id, r.target)
	}
	return m, err
}

func (r *Repo) manifest(ctx context.Context, id string) (Manifest, error) {
	raw, err := r.target.Get(ctx, manifestKey(id))
	if err != nil {
		return Manifest{}, err
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("%w: manifest of %s: %v", ErrCorrupt, id, err)
	}
	return m, nil
}

// index reads and checks a point's index.
func (r *Repo) index(ctx context.Context, m Manifest) (Index, error) {
	raw, err := r.target.Get(ctx, indexKey(m.ID))
	if err != nil {
		return Index{}, fmt.Errorf("index of %s: %w", m.ID, err)
	}
	ix, err := decodeIndex(raw)
	if err != nil {
		return ix, fmt.Errorf("point %s: %w", m.ID, err)
	}
	if sum := sha256Hex(raw); sum != m.IndexSHA256 || ix.Size != m.Size {
		return ix, fmt.Errorf("%w: point %s: its index is not the one its manifest names", ErrCorrupt, m.ID)
	}
	return ix, nil
}

// chunkIDs are the ids of every stored chunk.
func (r *Repo) chunkIDs(ctx context.Context) (map[ChunkID]bool, error) {
	keys, err := r.target.List(ctx, "chunks/")
	if err != nil {
		return nil, err
	}
	out := make(map[ChunkID]bool, len(keys))
	for _, k := range keys {
		if id, ok := parseChunkKey(k); ok {
			out[id] = true
		}
	}
	return out, nil
}

// readChunk fetches and checks one chunk's plaintext.
func (r *Repo) readChunk(ctx context.Context, id ChunkID) ([]byte, error) {
	obj, err := r.target.Get(ctx, chunkKey(id))
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", id, err)
	}
	return r.keys.decodeChunk(id, obj)
}
