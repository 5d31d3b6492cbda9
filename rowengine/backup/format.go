package backup

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
)

// ChunkSize is the size of a chunk's plaintext (the last of a volume may
// be shorter): 4 MiB, a multiple of every block size and of RBD's
// default object size, so a changed block dirties one chunk.
const ChunkSize = 4 << 20

// FormatVersion is written into every repository and manifest.
const FormatVersion = 1

// ChunkID names a chunk: SHA-256 of its plaintext, or with a key the
// HMAC-SHA256 of it, so an encrypted store learns nothing of the data.
// The zero ID is a chunk of zeros, which is never stored.
type ChunkID [32]byte

func (id ChunkID) String() string { return hex.EncodeToString(id[:]) }
func (id ChunkID) IsZero() bool   { return id == ChunkID{} }

func chunkKey(id ChunkID) string {
	s := id.String()
	return "chunks/" + s[:2] + "/" + s
}

func parseChunkKey(key string) (ChunkID, bool) {
	var id ChunkID
	name, ok := strings.CutPrefix(key, "chunks/")
	if !ok || len(name) != 2+1+64 {
		return id, false
	}
	b, err := hex.DecodeString(name[3:])
	if err != nil {
		return id, false
	}
	copy(id[:], b)
	return id, true
}

// Chunk objects: "RWC1", a flags byte (0 plain, 1 encrypted), then the
// zstd frame of the plaintext; encrypted, a 12-byte nonce and the
// AES-256-GCM seal of that frame, with the chunk id as additional data.
var chunkMagic = []byte("RWC1")

const (
	chunkPlain     = 0
	chunkEncrypted = 1
)

var (
	encoderOnce sync.Once
	encoder     *zstd.Encoder
	decoder     *zstd.Decoder
)

func codecs() (*zstd.Encoder, *zstd.Decoder) {
	encoderOnce.Do(func() {
		// Fastest: the data path is bounded by reading and hashing; a
		// stronger level costs more CPU than it saves on VM images.
		encoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		decoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0))
	})
	return encoder, decoder
}

// keys are a repository's keys, derived from its key file; nil: plain.
type keys struct {
	id, seal [32]byte
	aead     cipher.AEAD
}

// LoadKey reads a key file: 32 bytes, raw or as 64 hex digits.
func LoadKey(path string) (*keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: key file: %v", ErrKey, err)
	}
	if t := bytes.TrimSpace(b); len(t) == 64 {
		if raw, err := hex.DecodeString(string(t)); err == nil {
			b = raw
		}
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("%w: key file %s: want 32 bytes (or 64 hex digits), like head -c 32 /dev/urandom > KEYFILE", ErrKey, path)
	}
	k := &keys{}
	derive := func(label string) [32]byte {
		m := hmac.New(sha256.New, b)
		m.Write([]byte(label))
		var out [32]byte
		copy(out[:], m.Sum(nil))
		return out
	}
	k.id, k.seal = derive("rowfs chunk id"), derive("rowfs chunk seal")
	block, _ := aes.NewCipher(k.seal[:])
	k.aead, _ = cipher.NewGCM(block)
	return k, nil
}

// check is what the repository records of its key, to tell a wrong key
// from corruption: an HMAC of a fixed label, not the key.
func (k *keys) check() string {
	m := hmac.New(sha256.New, k.id[:])
	m.Write([]byte("rowfs key check"))
	return hex.EncodeToString(m.Sum(nil))[:16]
}

func (k *keys) chunkID(plain []byte) ChunkID {
	if k == nil {
		return sha256.Sum256(plain)
	}
	m := hmac.New(sha256.New, k.id[:])
	m.Write(plain)
	var id ChunkID
	copy(id[:], m.Sum(nil))
	return id
}

func (k *keys) encodeChunk(id ChunkID, plain []byte) []byte {
	enc, _ := codecs()
	frame := enc.EncodeAll(plain, make([]byte, 0, len(plain)/2))
	if k == nil {
		return append(append(append([]byte{}, chunkMagic...), chunkPlain), frame...)
	}
	out := append(append([]byte{}, chunkMagic...), chunkEncrypted)
	nonce := make([]byte, k.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, frame, id[:])
}

// decodeChunk returns a chunk's plaintext after checking it is id's.
func (k *keys) decodeChunk(id ChunkID, obj []byte) ([]byte, error) {
	if len(obj) < 5 || !bytes.Equal(obj[:4], chunkMagic) {
		return nil, fmt.Errorf("%w: chunk %s: no chunk header", ErrCorrupt, id)
	}
	frame := obj[5:]
	switch obj[4] {
	case chunkPlain:
		if k != nil {
			return nil, fmt.Errorf("%w: chunk %s is not encrypted, but the target is", ErrCorrupt, id)
		}
	case chunkEncrypted:
		if k == nil {
			return nil, fmt.Errorf("%w: chunk %s is encrypted: give the target's key file", ErrKey, id)
		}
		n := k.aead.NonceSize()
		if len(frame) < n {
			return nil, fmt.Errorf("%w: chunk %s: truncated", ErrCorrupt, id)
		}
		var err error
		if frame, err = k.aead.Open(nil, frame[:n], frame[n:], id[:]); err != nil {
			return nil, fmt.Errorf("%w: chunk %s does not authenticate", ErrCorrupt, id)
		}
	default:
		return nil, fmt.Errorf("%w: chunk %s: unknown flags %d", ErrCorrupt, id, obj[4])
	}
	_, dec := codecs()
	plain, err := dec.DecodeAll(frame, make([]byte, 0, ChunkSize))
	if err != nil {
		return nil, fmt.Errorf("%w: chunk %s: %v", ErrCorrupt, id, err)
	}
	if k.chunkID(plain) != id {
		return nil, fmt.Errorf("%w: chunk %s: its data does not hash to its id", ErrCorrupt, id)
	}
	return plain, nil
}

// Index is a point's chunk ids in volume order: "RWI1", chunk size
// (uint32), volume size (uint64), count (uint64), count ids of 32 bytes,
// then the SHA-256 of all that. A zero id is a chunk of zeros.
type Index struct {
	Size   uint64
	Chunks []ChunkID
}

var indexMagic = []byte("RWI1")

func chunkCount(size uint64) int { return int((size + ChunkSize - 1) / ChunkSize) }

// chunkLen is the plaintext length of chunk i of a volume of size bytes.
func chunkLen(size uint64, i int) int {
	return int(min(ChunkSize, size-uint64(i)*ChunkSize))
}

func (ix Index) encode() []byte {
	b := make([]byte, 0, 4+4+8+8+32*len(ix.Chunks)+32)
	b = append(b, indexMagic...)
	b = binary.BigEndian.AppendUint32(b, ChunkSize)
	b = binary.BigEndian.AppendUint64(b, ix.Size)
	b = binary.BigEndian.AppendUint64(b, uint64(len(ix.Chunks)))
	for _, id := range ix.Chunks {
		b = append(b, id[:]...)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

func decodeIndex(b []byte) (Index, error) {
	const head = 4 + 4 + 8 + 8
	if len(b) < head+32 || !bytes.Equal(b[:4], indexMagic) {
		return Index{}, fmt.Errorf("%w: index: no header", ErrCorrupt)
	}
	if sum := sha256.Sum256(b[:len(b)-32]); !bytes.Equal(sum[:], b[len(b)-32:]) {
		return Index{}, fmt.Errorf("%w: index checksum", ErrCorrupt)
	}
	if cs := binary.BigEndian.Uint32(b[4:]); cs != ChunkSize {
		return Index{}, fmt.Errorf("%w: index of chunk size %d (this rowfs reads %d)", ErrCorrupt, cs, ChunkSize)
	}
	ix := Index{Size: binary.BigEndian.Uint64(b[8:])}
	n := binary.BigEndian.Uint64(b[16:])
	if n != uint64(chunkCount(ix.Size)) || uint64(len(b)) != head+32*n+32 {
		return Index{}, fmt.Errorf("%w: index length", ErrCorrupt)
	}
	ix.Chunks = make([]ChunkID, n)
	for i := range ix.Chunks {
		copy(ix.Chunks[i][:], b[head+32*i:])
	}
	return ix, nil
}

// Manifest describes one point. It is written last, after the point's
// chunks and index: a point whose manifest exists can be restored whole.
type Manifest struct {
	Format  int       `json:"format"`
	ID      string    `json:"id"`
	Volume  string    `json:"volume"`
	Size    uint64    `json:"size"`
	Created time.Time `json:"created"`
	// Kind is "full" (a new chain) or "incremental" (on Parent's chain).
	Kind   string `json:"kind"`
	Chain  string `json:"chain"`
	Parent string `json:"parent,omitempty"`
	// Snapshot is the snapshot the point was read from.
	Snapshot string `json:"snapshot"`
	// Group and Consistency: a point of a group backup, and how its
	// snapshot was cut (crash or frozen).
	Group       string `json:"group,omitempty"`
	Consistency string `json:"consistency,omitempty"`
	// Policy names the backup policy that made the point: it prunes only
	// its own.
	Policy      string `json:"policy,omitempty"`
	ChunkSize   int    `json:"chunk_size"`
	Chunks      int    `json:"chunks"`
	IndexSHA256 string `json:"index_sha256"`
	Encrypted   bool   `json:"encrypted,omitempty"`
	Stats       Stats  `json:"stats"`
}

// Stats are what making a point cost.
type Stats struct {
	// ReadBytes were read from the volume; UploadedBytes sent to the
	// target (compressed); ReusedBytes not sent because the target had
	// them (plaintext bytes); ZeroChunks stored as nothing.
	ReadBytes     uint64 `json:"read_bytes"`
	UploadedBytes uint64 `json:"uploaded_bytes"`
	ReusedBytes   uint64 `json:"reused_bytes"`
	ZeroChunks    int    `json:"zero_chunks"`
	// ChangedChunks were read because they changed since the parent (or,
	// for a full point, hold data).
	ChangedChunks int `json:"changed_chunks"`
}

func indexKey(id string) string    { return "points/" + id + ".index" }
func manifestKey(id string) string { return "points/" + id + ".json" }

// newPointID is a point's id: its UTC time and a random suffix, so points
// sort by time and two daemons sharing a target never collide.
func newPointID(now time.Time) string {
	var r [3]byte
	_, _ = rand.Read(r[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(r[:])
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
