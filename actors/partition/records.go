package partition

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Bounds of a walk over a compressed batch's records. A batch is at most
// max.message.bytes on the wire, but its records may decompress to almost
// anything: a run of zeros shrinks thousands of times under zstd or gzip.
// The walk streams the records and never holds them, so its memory is the
// codec's (at most maxWalkWindow) whatever the batch decompresses to, and
// its work is bounded by maxWalkBytes, past which a timestamp lookup
// answers for the batch from its header and produce's count check refuses
// it.
const (
	// maxWalkBytes is how many decompressed bytes one walk reads at most:
	// well above what a client's batch decompresses to (librdkafka, the
	// Java client and franz-go cap a batch at about 1 MB before
	// compression by default).
	maxWalkBytes = 64 << 20
	// maxWalkWindow bounds what a codec holds while walking: zstd's window,
	// a snappy block (decoded whole). lz4 frames bound their blocks at
	// 4 MiB themselves, gzip's window is 32 KiB.
	maxWalkWindow = 8 << 20
	// walkBufferSize is the read buffer between the codec and the walk.
	walkBufferSize = 32 << 10
)

var (
	errBadRecord = errors.New("malformed record")
	// errWalkLimit reports a batch that decompresses past maxWalkBytes, or
	// needs a codec window over maxWalkWindow.
	errWalkLimit = errors.New("batch too large to walk")
	// errMalformedXerial reports snappy records whose xerial framing is cut
	// short.
	errMalformedXerial = errors.New("malformed xerial snappy framing")
)

// eachRecord calls fn with the offset and timestamp of each record of the
// batch b, in order, until fn returns false. A compressed batch's records
// are decompressed as a stream (timestamp lookups are rare; the fetch path
// never decompresses, produce only a batch that claims more records than
// bytes): it fails with errWalkLimit past maxWalkBytes, and with an error
// wrapping errBadRecord if the records do not decode.
func eachRecord(b []byte, h BatchHeader, fn func(offset, ts int64) bool) error {
	if h.Compression() == CompressionNone {
		return eachPlainRecord(b[BatchHeaderSize:], h, fn)
	}
	return eachCompressedRecord(b[BatchHeaderSize:], h, maxWalkBytes, fn)
}

// eachPlainRecord is eachRecord for the uncompressed records recs of the
// batch whose header is h. Each record is decoded whole (plainRecord).
func eachPlainRecord(recs []byte, h BatchHeader, fn func(offset, ts int64) bool) error {
	p := 0
	for range h.RecordCount {
		tsDelta, offDelta, next, err := plainRecord(recs, p)
		if err != nil {
			return err
		}
		p = next
		if !fn(h.BaseOffset+int64(offDelta), h.BaseTimestamp+tsDelta) {
			return nil
		}
	}
	return nil
}

// plainRecord decodes the uncompressed record at recs[p:] and returns its
// timestamp and offset deltas and where the record after it starts. It
// checks the record's whole structure, as Kafka's DefaultRecord.readFrom
// does: a length within recs, then inside it the attributes, the two
// deltas, the key, the value and the headers, each within the record, and
// nothing left over. Errors wrap errBadRecord.
//
// This is the produce path's one pass over an uncompressed batch's
// records, and the count check's over a compressed one's, so it is written
// for speed: most fields are one- or two-byte varints, which readVarint
// decodes inline.
func plainRecord(recs []byte, p int) (tsDelta int64, offDelta int32, next int, err error) {
	length, n := readVarint(recs[p:])
	if n <= 0 || length < 1 || length > int64(len(recs)-p-n) {
		return 0, 0, 0, fmt.Errorf("%w: record length at byte %d", errBadRecord, p)
	}
	p += n
	next = p + int(length)
	// rec[0] is the attributes byte, which magic 2 records do not use.
	rec, q := recs[p:next], 1
	if tsDelta, n = readVarint(rec[q:]); n <= 0 {
		return 0, 0, 0, fmt.Errorf("%w: timestamp delta of the record at byte %d", errBadRecord, p)
	}
	q += n
	off, n := readVarint(rec[q:])
	if n <= 0 || off != int64(int32(off)) {
		return 0, 0, 0, fmt.Errorf("%w: offset delta of the record at byte %d", errBadRecord, p)
	}
	q += n
	// The key and the value: a length (-1, or any negative, for null, as
	// Kafka reads it) and that many bytes. Then the headers: a count, and
	// for each a key, never null, and a value.
	var size int64
	for range 2 {
		if size, n = readVarint(rec[q:]); n <= 0 || size > int64(len(rec)-q-n) || size != int64(int32(size)) {
			return 0, 0, 0, fmt.Errorf("%w: key or value of the record at byte %d", errBadRecord, p)
		}
		q += n + int(max(size, 0))
	}
	headers, n := readVarint(rec[q:])
	if n <= 0 || headers < 0 || headers > int64(len(rec)-q-n) {
		return 0, 0, 0, fmt.Errorf("%w: header count of the record at byte %d", errBadRecord, p)
	}
	q += n
	for i := range 2 * headers {
		size, n = readVarint(rec[q:])
		if n <= 0 || size > int64(len(rec)-q-n) || size != int64(int32(size)) || (size < 0 && i%2 == 0) {
			return 0, 0, 0, fmt.Errorf("%w: header %d of the record at byte %d", errBadRecord, i/2, p)
		}
		q += n + int(max(size, 0))
	}
	if q != len(rec) {
		return 0, 0, 0, fmt.Errorf("%w: record at byte %d is %d bytes long, its fields take %d", errBadRecord, p, len(rec), q)
	}
	return tsDelta, int32(off), next, nil
}

// readVarint is binary.Varint written so that the compiler inlines it:
// the produce path decodes every field of every record with it.
func readVarint(b []byte) (int64, int) {
	var u uint64
	var s uint
	for i, c := range b {
		if i == binary.MaxVarintLen64 {
			return 0, -(i + 1) // overflow
		}
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -(i + 1) // overflow
			}
			u |= uint64(c) << s
			return int64(u>>1) ^ -int64(u&1), i + 1
		}
		u |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0
}

// eachCompressedRecord is eachRecord for the compressed records src of the
// batch whose header is h, reading at most limit decompressed bytes. Each
// record is decoded whole (compressedRecords.next), its key, value and
// header bytes skipped.
func eachCompressedRecord(src []byte, h BatchHeader, limit int64, fn func(offset, ts int64) bool) error {
	r, err := openCompressed(src, h.Compression(), limit)
	if err != nil {
		return err
	}
	defer r.close()
	for range h.RecordCount {
		tsDelta, offDelta, err := r.next()
		if err != nil {
			return err
		}
		if !fn(h.BaseOffset+offDelta, h.BaseTimestamp+tsDelta) {
			return nil
		}
	}
	return nil
}

// compressedRecords reads the records of a compressed batch as a stream,
// never holding them: the timestamp lookups' walk and produce's check of a
// compressed batch's count (checkCompressedCount).
type compressedRecords struct {
	c     Compression
	s     recordStream
	close func()
}

// openCompressed starts reading the records src compressed with c, at
// most limit bytes of them decompressed. Errors wrap errBadRecord or
// errWalkLimit (walkError); the caller calls close.
func openCompressed(src []byte, c Compression, limit int64) (*compressedRecords, error) {
	r, closeFn, err := newDecompressor(c, src)
	if err != nil {
		return nil, walkError(c, err)
	}
	return &compressedRecords{
		c:     c,
		s:     recordStream{r: bufio.NewReaderSize(&limitedReader{r: r, left: limit}, walkBufferSize)},
		close: closeFn,
	}, nil
}

// next reads the next record whole, as Kafka reads a compressed batch's
// (DefaultRecord.readPartiallyFrom): a length, then the attributes, the
// timestamp and offset deltas, the key, the value and the headers, each
// within the record, and nothing left over, the bytes of keys and values
// skipped rather than held. It returns the record's timestamp and offset
// deltas. Errors wrap errBadRecord or errWalkLimit (walkError).
func (r *compressedRecords) next() (tsDelta, offDelta int64, err error) {
	s := &r.s
	s.ensureVarint()
	// A record the window holds whole is read in one call, as an
	// uncompressed one is; one it does not, or one that does not decode
	// (to say why), field by field.
	if ts, off, next, err := plainRecord(s.win, s.p); err == nil {
		s.p = next
		return ts, int64(off), nil
	}
	length, err := s.varint()
	if err != nil {
		return 0, 0, walkError(r.c, err)
	}
	if length < 1 || length != int64(int32(length)) {
		return 0, 0, fmt.Errorf("%w: %s: record length %d", errBadRecord, r.c, length)
	}
	start := s.pos()
	end := start + length
	if err := s.skip(1); err != nil { // attributes
		return 0, 0, walkError(r.c, err)
	}
	if tsDelta, err = s.varint(); err != nil {
		return 0, 0, walkError(r.c, err)
	}
	if offDelta, err = s.varint(); err != nil {
		return 0, 0, walkError(r.c, err)
	}
	if offDelta != int64(int32(offDelta)) {
		return 0, 0, fmt.Errorf("%w: %s: offset delta %d", errBadRecord, r.c, offDelta)
	}
	// The key and the value may be null (a negative length); then the
	// headers: a count, and for each a key, never null, and a value.
	if err := r.skipFields(2, end, false); err != nil {
		return 0, 0, err
	}
	headers, err := s.varint()
	if err != nil {
		return 0, 0, walkError(r.c, err)
	}
	if headers < 0 || headers > end-s.pos() {
		return 0, 0, fmt.Errorf("%w: %s: header count %d", errBadRecord, r.c, headers)
	}
	if err := r.skipFields(2*headers, end, true); err != nil {
		return 0, 0, err
	}
	if s.pos() != end {
		return 0, 0, fmt.Errorf("%w: %s: record length %d, its fields take %d bytes", errBadRecord, r.c, length, s.pos()-start)
	}
	return tsDelta, offDelta, nil
}

// skipFields skips count fields of the record that ends at byte end of
// the stream, each a varint length and that many bytes, a negative length
// null: the key and the value, which may be null, or with headers the
// headers' keys, which may not, and values in turn. The lengths are
// decoded in a loop over the buffered window rather than a call per byte:
// a 2 KiB zstd batch can hold one record of 33 million empty headers.
func (r *compressedRecords) skipFields(count, end int64, headers bool) error {
	s := &r.s
window:
	for i := int64(0); i < count; {
		s.ensureVarint()
		// A varint within the window is whole unless the stream ended.
		win, p := s.win, s.p
		left := end - s.n // bytes of the record from the window's start
		for i < count && (len(win)-p >= binary.MaxVarintLen64 || s.err != nil) {
			// Most lengths are one byte: decoded here without a loop.
			var size int64
			n := 1
			if p < len(win) && win[p] < 0x80 {
				c := int64(win[p])
				size = c>>1 ^ -(c & 1)
			} else if size, n = readVarint(win[p:]); n <= 0 {
				s.p = p
				return walkError(r.c, s.varintError(n))
			}
			p += n
			if size > left-int64(p) || size != int64(int32(size)) || size < 0 && headers && i%2 == 0 {
				s.p = p
				return fmt.Errorf("%w: %s: field of %d bytes", errBadRecord, r.c, size)
			}
			i++
			if size <= 0 {
				continue
			}
			if size > int64(len(win)-p) {
				s.p = p
				if err := s.skip(size); err != nil {
					return walkError(r.c, err)
				}
				continue window
			}
			p += int(size)
		}
		s.p = p
	}
	return nil
}

// atEnd reports whether the records read are the last: no decompressed
// byte follows them, which also checks the codec's own trailer (gzip's
// checksum) where it has one. An error wraps errBadRecord or errWalkLimit.
func (r *compressedRecords) atEnd() (bool, error) {
	s := &r.s
	if s.p == len(s.win) && s.err == nil {
		s.fill()
	}
	switch {
	case s.p < len(s.win):
		return false, nil
	case errors.Is(s.err, io.EOF):
		return true, nil
	}
	return false, walkError(r.c, s.err)
}

// walkError wraps an error of a walk over records compressed with c:
// errWalkLimit as is, a zstd window over maxWalkWindow as errWalkLimit,
// anything else as errBadRecord.
func walkError(c Compression, err error) error {
	switch {
	case errors.Is(err, errWalkLimit):
		return fmt.Errorf("%w: %s", err, c)
	case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return fmt.Errorf("%w: %s: %v", errWalkLimit, c, err)
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: %s: %v", errBadRecord, c, err)
}

// errVarintOverflow reports a varint longer than an int64, as
// binary.ReadVarint does.
var errVarintOverflow = errors.New("varint overflows a 64-bit integer")

// recordStream reads decompressed records through a window onto the
// bytes its bufio.Reader holds (Peek), so that a field costs an inline
// varint decode (readVarint, as uncompressed records are read) rather
// than a call per byte.
type recordStream struct {
	r *bufio.Reader
	// win is what r holds from its read position; the first p bytes of
	// it are read, and discarded from r when the window moves on.
	win []byte
	p   int
	// n is how many bytes were read before win.
	n int64
	// err is why win holds fewer than binary.MaxVarintLen64 bytes: the
	// stream's end (io.EOF) or its failure.
	err error
}

// pos is how many bytes have been read.
func (s *recordStream) pos() int64 { return s.n + int64(s.p) }

// fill moves the window past the bytes read and over all r holds, which
// is at least binary.MaxVarintLen64 bytes unless the stream ends first
// (err).
func (s *recordStream) fill() {
	d, _ := s.r.Discard(s.p) // held by r: cannot fail
	s.n += int64(d)
	s.p = 0
	s.win, s.err = s.r.Peek(binary.MaxVarintLen64)
	if s.err == nil {
		s.win, _ = s.r.Peek(s.r.Buffered())
	}
}

// ensureVarint fills the window when it holds less than a whole varint
// and the stream has more.
func (s *recordStream) ensureVarint() {
	if len(s.win)-s.p < binary.MaxVarintLen64 && s.err == nil {
		s.fill()
	}
}

// varint reads a varint.
func (s *recordStream) varint() (int64, error) {
	s.ensureVarint()
	v, n := readVarint(s.win[s.p:])
	if n <= 0 {
		return 0, s.varintError(n)
	}
	s.p += n
	return v, nil
}

// varintError is the error of a varint that readVarint could not decode
// from the window, returning n: too long, or cut short by the stream's
// end (a window of at least binary.MaxVarintLen64 bytes holds a whole
// one).
func (s *recordStream) varintError(n int) error {
	if n < 0 {
		return errVarintOverflow
	}
	return s.err
}

// skip reads past n bytes.
func (s *recordStream) skip(n int64) error {
	if n <= int64(len(s.win)-s.p) {
		s.p += int(n)
		return nil
	}
	if s.err != nil {
		// The window is all that is left.
		s.p = len(s.win)
		return s.err
	}
	n -= int64(len(s.win) - s.p)
	d, _ := s.r.Discard(len(s.win)) // held by r: cannot fail
	s.n += int64(d)
	s.win, s.p = nil, 0
	for n > 0 {
		d, err := s.r.Discard(int(min(n, 1<<30)))
		s.n += int64(d)
		n -= int64(d)
		if err != nil {
			return err
		}
	}
	return nil
}

// limitedReader is io.LimitedReader failing with errWalkLimit rather than
// io.EOF at the limit, so that a walk can tell a batch too large from one
// cut short. A stream that ends exactly at the limit ends with io.EOF.
type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		var probe [1]byte
		if n, err := l.r.Read(probe[:]); n == 0 && err == io.EOF {
			return 0, io.EOF
		}
		return 0, errWalkLimit
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// xerialPrefix starts snappy records framed the way the Java client writes
// them (snappy-java's stream format), as opposed to one raw snappy block
// (librdkafka, Sarama, older franz-go); franz-go's decompressor tells them
// apart the same way.
var xerialPrefix = []byte{130, 83, 78, 65, 80, 80, 89, 0}

// xerialHeaderSize is the prefix followed by the version and the minimum
// compatible version, 4 bytes each.
const xerialHeaderSize = 16

// newDecompressor returns a reader of the records src compressed with c,
// holding at most about maxWalkWindow bytes, and the function that
// releases it.
func newDecompressor(c Compression, src []byte) (io.Reader, func(), error) {
	nothing := func() {}
	switch c {
	case CompressionGzip:
		zr, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, nil, err
		}
		return zr, nothing, nil
	case CompressionSnappy:
		if len(src) > xerialHeaderSize && bytes.HasPrefix(src, xerialPrefix) {
			return &xerialReader{src: src[xerialHeaderSize:]}, nothing, nil
		}
		// A raw snappy block can copy from anywhere before, so it is
		// decoded whole; its header gives the decoded length.
		n, err := s2.DecodedLen(src)
		if err != nil {
			return nil, nil, err
		}
		if n > maxWalkWindow {
			return nil, nil, fmt.Errorf("%w: a snappy block of %d bytes", errWalkLimit, n)
		}
		out, err := s2.Decode(nil, src)
		if err != nil {
			return nil, nil, err
		}
		return bytes.NewReader(out), nothing, nil
	case CompressionLZ4:
		return lz4.NewReader(bytes.NewReader(src)), nothing, nil
	case CompressionZstd:
		// Synchronous and low-memory: the decoder then holds one window
		// (refused over maxWalkWindow) and one block.
		zr, err := zstd.NewReader(bytes.NewReader(src),
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxWalkWindow),
		)
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return nil, nil, fmt.Errorf("unknown compression codec %d", c)
}

// xerialReader decodes xerial-framed snappy one block at a time: after
// the header, each block is a big-endian length and a raw snappy block.
type xerialReader struct {
	src []byte // the blocks not yet decoded
	buf []byte // the decoded block, reused
	out []byte // what is left of it to read
}

func (x *xerialReader) Read(p []byte) (int, error) {
	for len(x.out) == 0 {
		if len(x.src) == 0 {
			return 0, io.EOF
		}
		if len(x.src) < 4 {
			return 0, errMalformedXerial
		}
		size := binary.BigEndian.Uint32(x.src)
		if uint64(size) > uint64(len(x.src)-4) {
			return 0, errMalformedXerial
		}
		block := x.src[4 : 4+size]
		x.src = x.src[4+size:]
		n, err := s2.DecodedLen(block)
		if err != nil {
			return 0, err
		}
		if n > maxWalkWindow {
			return 0, fmt.Errorf("%w: a snappy block of %d bytes", errWalkLimit, n)
		}
		if x.buf, err = s2.Decode(x.buf[:cap(x.buf)], block); err != nil {
			return 0, err
		}
		x.out = x.buf
	}
	n := copy(p, x.out)
	x.out = x.out[n:]
	return n, nil
}
