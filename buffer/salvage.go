package buffer

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/highwayhash"
)

// The record layout of nats-server's file store (server/filestore.go,
// stable since 2.2): a 22-byte header (record length with the headers bit,
// sequence with the erased and tombstone bits, timestamp, subject length),
// the subject, optional headers behind their length, the payload and an
// 8-byte highwayhash of header fields, subject and body keyed per block.
const (
	recHdrSize   = 22
	recHashSize  = 8
	recHdrBit    = 1 << 31
	recEraseBit  = 1 << 63
	recTombBit   = 1 << 62
	recMaxLen    = 32 << 20 // nats-server's rlBadThresh
	recMaxSeq    = 1 << 48  // no real stream gets here: random bytes do
	stateMagic   = 11       // index.db's first byte
	damagedDir   = "damaged"
	salvageTmp   = ".salvage.tmp"
	stateIndexDB = "index.db"
)

// Salvaged is what the salvage pass found in one stream's block files:
// the runs of sequences whose records were unreadable (each a Loss with
// Cause set) and the block files it rewrote.
type Salvaged struct {
	Losses []Loss
	Blocks []string
}

// SalvageStore checks the block files of the agent's streams before
// nats-server opens them. nats-server, on a record that fails its checksum,
// truncates the block there (server/filestore.go rebuildStateFromBufLocked),
// so one damaged record destroys every record after it in the block, and
// while its index.db still matches the block's last checksum it does so
// only when the block is first read, long after the agent checked the
// streams at start. Here every readable record after the damaged bytes is
// kept: the block is rewritten without them, its sequences become a gap
// nats-server rebuilds as deleted messages, and the gap is reported
// exactly. The damaged original is kept under state_dir/damaged for
// inspection; index.db is removed so the server rebuilds the stream's
// state from the blocks (what it does after a crash anyway).
//
// Encrypted stores are left to nats-server (their blocks cannot be read
// here). A stream whose blocks are all intact is not touched.
func SalvageStore(stateDir string, log *slog.Logger) ([]Loss, error) {
	// Blocks the hub has all of are not read: their damage costs no
	// reading the hub lacks, and nats-server handles it as before. Without
	// a readable state.db every block is read.
	cursors := map[string]uint64{}
	if st, err := OpenStateReadOnly(filepath.Join(stateDir, "state.db")); err == nil {
		for _, name := range Lanes {
			cursors[name] = st.Cursor(name)
		}
		st.Close()
	}
	var out []Loss
	for _, name := range Lanes {
		dirs, _ := filepath.Glob(filepath.Join(stateDir, "jetstream", "*", "streams", name, "msgs"))
		for _, dir := range dirs {
			s, err := salvageStream(stateDir, dir, name, cursors[name], time.Now())
			if err != nil {
				return out, fmt.Errorf("salvage stream %s in %s: %w", name, dir, err)
			}
			for _, b := range s.Blocks {
				log.Error("local stream block file damaged: kept every readable record, the damaged original is kept aside", "stream", name, "block", b)
			}
			out = append(out, s.Losses...)
		}
	}
	return out, nil
}

func salvageStream(stateDir, dir, stream string, cursor uint64, now time.Time) (Salvaged, error) {
	var res Salvaged
	if keys, _ := filepath.Glob(filepath.Join(dir, "*.key")); len(keys) > 0 {
		return res, nil
	}
	blocks, err := blockFiles(dir)
	if err != nil || len(blocks) == 0 {
		return res, err
	}
	// The extent the server last wrote down bounds a tail cut in the last
	// block; without it the caller's last known extent does.
	_, indexLast := readIndexExtent(filepath.Join(dir, stateIndexDB))
	var prevLast uint64 // last message sequence of the blocks before
	type cut struct {
		from  uint64 // first sequence lost
		block int
	}
	var open *cut // a run of lost records not closed by a later record yet
	var buf []byte
	for i, b := range blocks {
		if i+1 < len(blocks) && open == nil {
			if next, ok := firstRecordSeq(blocks[i+1].path); ok && next-1 <= cursor {
				prevLast = next - 1
				continue
			}
		}
		if buf, err = readBlock(b.path, buf); err != nil {
			return res, err
		}
		if compressed(buf) {
			continue // not this record format: left to nats-server
		}
		sc := scanBlock(buf, stream, b.index)
		if len(sc.good) == 0 {
			// Nothing readable at all: nothing to salvage, and maybe not a
			// block this pass understands. nats-server reports what it
			// loses there (the streams' check records it).
			continue
		}
		if first, ok := sc.firstSeq(); ok && open != nil {
			res.Losses = append(res.Losses, Loss{Stream: stream, From: max(open.from, 1), To: first - 1, Cause: causeFor(blocks[open.block].path)})
			open = nil
		}
		for _, g := range sc.gaps {
			from := prevLast + 1
			if g.after != 0 {
				from = g.after + 1
			}
			if g.before == 0 {
				open = &cut{from: from, block: i}
				continue
			}
			if g.before > from {
				res.Losses = append(res.Losses, Loss{Stream: stream, From: from, To: g.before - 1, Cause: causeFor(b.path)})
			}
		}
		if l := sc.lastSeq(); l > 0 {
			prevLast = l
		}
		if len(sc.gaps) == 0 {
			continue
		}
		if err := rewriteBlock(stateDir, b.path, stream, sc.good, now); err != nil {
			return res, err
		}
		res.Blocks = append(res.Blocks, b.path)
	}
	if open != nil && indexLast >= open.from {
		res.Losses = append(res.Losses, Loss{Stream: stream, From: open.from, To: indexLast, Cause: causeFor(blocks[open.block].path)})
	} else if open != nil {
		// The extent is unknown here: the streams' check measures the
		// tail against state.db's last known extent and the cursor.
		res.Losses = append(res.Losses, Loss{Stream: stream, From: open.from, Cause: causeFor(blocks[open.block].path)})
	}
	for i, l := range res.Losses {
		if l.To >= l.From && l.To > 0 {
			res.Losses[i].Count = l.To - l.From + 1
		}
	}
	if len(res.Blocks) > 0 {
		if err := os.Remove(filepath.Join(dir, stateIndexDB)); err != nil && !os.IsNotExist(err) {
			return res, err
		}
	}
	return res, nil
}

// readBlock reads the block file at path into buf, grown as needed: one
// buffer for every block of a stream, as reading a store of many blocks
// into a new buffer each spent more time clearing and faulting in fresh
// memory (and returning it) than reading and hashing the records.
func readBlock(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return buf, err
	}
	return readSized(f, fi.Size(), buf)
}

// readSized reads the size bytes r had when stated into buf (grown when
// short). nats-server may compact or remove the block meanwhile: what is
// there then, maybe nothing, is the block.
func readSized(r io.Reader, size int64, buf []byte) ([]byte, error) {
	if n := int(size); cap(buf) < n {
		buf = make([]byte, n)
	}
	n, err := io.ReadFull(r, buf[:size])
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	return buf[:n], err
}

func causeFor(block string) string {
	return "unreadable records in block file " + filepath.Base(block)
}

type blockFile struct {
	path  string
	index uint32
}

// blockFiles lists dir's "<n>.blk" files in block order.
func blockFiles(dir string) ([]blockFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []blockFile
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), ".blk")
		if !ok || e.IsDir() {
			continue
		}
		i, err := strconv.ParseUint(n, 10, 32)
		if err != nil {
			continue
		}
		out = append(out, blockFile{filepath.Join(dir, e.Name()), uint32(i)})
	}
	slices.SortFunc(out, func(a, b blockFile) int { return int(int64(a.index) - int64(b.index)) })
	return out, nil
}

// readIndexExtent reads the first and last sequence from a plaintext
// index.db (magic, version, then uvarint msgs, bytes, first seq, varint
// first time, uvarint last seq). Zeros when it is missing or unreadable.
func readIndexExtent(path string) (first, last uint64) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 3 || b[0] != stateMagic {
		return 0, 0
	}
	b = b[2:]
	var vals [5]uint64
	for i := range vals {
		var n int
		if i == 3 {
			_, n = binary.Varint(b)
		} else {
			vals[i], n = binary.Uvarint(b)
		}
		if n <= 0 {
			return 0, 0
		}
		b = b[n:]
	}
	return vals[2], vals[4]
}

// compressed says whether buf starts with nats-server's compressed-block
// header ("cmp" and the S2 algorithm byte).
func compressed(buf []byte) bool {
	return len(buf) >= 4 && string(buf[:3]) == "cmp" && buf[3] == 1
}

// firstRecordSeq is the sequence in the first record header of a block,
// when that record is a message (not a tombstone or an erased one).
func firstRecordSeq(path string) (uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var hdr [recHdrSize]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return 0, false
	}
	seq := binary.LittleEndian.Uint64(hdr[4:])
	if seq&(recTombBit|recEraseBit) != 0 || seq == 0 || seq >= recMaxSeq {
		return 0, false
	}
	return seq, true
}

// blockScan is one block file read record by record.
type blockScan struct {
	good [][]byte // intact records, in file order
	seqs []uint64 // their message sequences (0 for tombstones)
	gaps []seqGap // where unreadable bytes were
}

// seqGap is a run of unreadable bytes: after is the last message sequence
// before it in this block (0: none), before the first after it (0: none,
// the damage runs to the end of the block).
type seqGap struct{ after, before uint64 }

func (s blockScan) firstSeq() (uint64, bool) {
	for _, q := range s.seqs {
		if q != 0 {
			return q, true
		}
	}
	return 0, false
}

func (s blockScan) lastSeq() uint64 {
	for i := len(s.seqs) - 1; i >= 0; i-- {
		if s.seqs[i] != 0 {
			return s.seqs[i]
		}
	}
	return 0
}

// scanBlock reads buf as nats-server would, but on a bad record it looks
// for the next record that passes its checksum instead of stopping.
func scanBlock(buf []byte, stream string, index uint32) blockScan {
	key := sha256.Sum256([]byte(fmt.Sprintf("%s-%d", stream, index)))
	hh, _ := highwayhash.New64(key[:])
	var sc blockScan
	var last uint64
	for off := 0; off < len(buf); {
		rl, seq, ok := checkRecord(buf[off:], hh, last)
		if ok {
			sc.good = append(sc.good, buf[off:off+rl])
			if seq&recTombBit != 0 || seq&recEraseBit != 0 {
				sc.seqs = append(sc.seqs, 0)
			} else {
				sc.seqs = append(sc.seqs, seq)
				last = seq
			}
			off += rl
			continue
		}
		// Find the next intact record after the damaged bytes.
		next := -1
		for j := off + 1; j+recHdrSize+recHashSize <= len(buf); j++ {
			if _, _, ok := checkRecord(buf[j:], hh, last); ok {
				next = j
				break
			}
		}
		g := seqGap{after: last}
		if next < 0 {
			sc.gaps = append(sc.gaps, g)
			return sc
		}
		_, s, _ := checkRecord(buf[next:], hh, last)
		if s&(recTombBit|recEraseBit) == 0 {
			g.before = s
		} else {
			// A tombstone or erased record does not say where messages
			// resume: the next message record does.
			g.before = nextMsgSeq(buf[next:], hh, last)
		}
		sc.gaps = append(sc.gaps, g)
		off = next
	}
	return sc
}

// nextMsgSeq is the sequence of the first message record in buf (0: none),
// reading intact records only.
func nextMsgSeq(buf []byte, hh hash.Hash, last uint64) uint64 {
	for off := 0; off < len(buf); {
		rl, seq, ok := checkRecord(buf[off:], hh, last)
		if !ok {
			return 0
		}
		if seq&(recTombBit|recEraseBit) == 0 {
			return seq
		}
		off += rl
	}
	return 0
}

// checkRecord says whether b starts with an intact record and returns its
// length and raw sequence. A message record must come after last.
func checkRecord(b []byte, hh hash.Hash, last uint64) (int, uint64, bool) {
	if len(b) < recHdrSize+recHashSize {
		return 0, 0, false
	}
	le := binary.LittleEndian
	rl := le.Uint32(b)
	hasHdrs := rl&recHdrBit != 0
	rl &^= recHdrBit
	slen := int(le.Uint16(b[20:]))
	seq := le.Uint64(b[4:])
	plain := seq &^ (recTombBit | recEraseBit)
	dlen := int(rl) - recHdrSize
	shlen := slen
	if hasHdrs {
		shlen += 4
	}
	if rl > recMaxLen || int(rl) > len(b) || dlen < recHashSize || shlen > dlen-recHashSize || plain == 0 || plain >= recMaxSeq {
		return 0, 0, false
	}
	if seq&(recTombBit|recEraseBit) == 0 && seq <= last {
		return 0, 0, false
	}
	data := b[recHdrSize:rl]
	hh.Reset()
	_, _ = hh.Write(b[4:20])
	_, _ = hh.Write(data[:slen])
	if hasHdrs {
		_, _ = hh.Write(data[slen+4 : dlen-recHashSize])
	} else {
		_, _ = hh.Write(data[slen : dlen-recHashSize])
	}
	var sum [recHashSize]byte
	if !bytes.Equal(hh.Sum(sum[:0]), data[dlen-recHashSize:]) {
		return 0, 0, false
	}
	return int(rl), seq, true
}

// rewriteBlock keeps the damaged original under state_dir/damaged and
// replaces the block with its intact records (written and synced under a
// name nats-server does not scan, then renamed over it).
func rewriteBlock(stateDir, path, stream string, good [][]byte, now time.Time) error {
	aside := filepath.Join(stateDir, damagedDir)
	if err := os.MkdirAll(aside, 0o750); err != nil {
		return err
	}
	keep := filepath.Join(aside, fmt.Sprintf("%s-%s-%s", stream, filepath.Base(path), now.UTC().Format("20060102T150405Z")))
	if err := copyOut(path, keep); err != nil {
		return fmt.Errorf("keep the damaged block aside as %s: %w", keep, err)
	}
	tmp := filepath.Join(filepath.Dir(path), salvageTmp)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	for _, r := range good {
		if _, err = f.Write(r); err != nil {
			break
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("rewrite %s without its damaged records: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func copyOut(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o640)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
