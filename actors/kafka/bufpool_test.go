package kafka

import "testing"

func TestBodyPoolSizes(t *testing.T) {
	tests := []struct {
		n      int
		pooled bool
	}{
		{n: 0},
		{n: minPooledBody - 1},
		{n: minPooledBody, pooled: true},
		{n: minPooledBody + 1, pooled: true},
		{n: 5_300_000, pooled: true},
		{n: maxPooledBody, pooled: true},
		{n: maxPooledBody + 1},
	}
	for _, tt := range tests {
		for _, pool := range []*bufPool{newBodyPool(), nil} {
			b := pool.get(tt.n)
			// A pooled buffer has room for a larger request, but wastes
			// at most a quarter of the body's power of two.
			lo, hi := tt.n, tt.n
			if tt.pooled && pool != nil {
				hi = tt.n + tt.n/4
			}
			if len(b) != tt.n || cap(b) < lo || cap(b) > hi || cap(b) > max(tt.n, maxPooledBody) {
				t.Errorf("get(%d) from pool %p: len %d cap %d, want len %d cap in [%d, %d]", tt.n, pool, len(b), cap(b), tt.n, lo, hi)
			}
			pool.put(b) // never panics, whatever it is given
		}
	}
}

func TestBodyPoolReuse(t *testing.T) {
	p := newBodyPool()
	a := p.get(5_300_000)
	p.put(a)
	if b := p.get(cap(a)); &b[0] != &a[0] || len(b) != cap(a) {
		t.Fatal("a buffer given back is not reused for a body it holds")
	}
	if b := p.get(5_300_000); &b[0] == &a[0] {
		t.Fatal("a buffer handed out twice")
	}

	// The smallest buffer that holds the body is the one reused.
	p = newBodyPool()
	big, small := p.get(7<<20), p.get(3<<20)
	p.put(big)
	p.put(small)
	if b := p.get(2 << 20); &b[0] != &small[0] {
		t.Fatal("a 2 MiB body did not get the smallest buffer kept")
	}
	if b := p.get(4 << 20); &b[0] != &big[0] {
		t.Fatal("a 4 MiB body did not get the only buffer that holds it")
	}

	// What the pool keeps unused is bounded, and the smallest buffers go
	// first.
	p = newBodyPool()
	tiny := p.get(minPooledBody)
	p.put(tiny)
	var bufs [][]byte
	for range maxFreeBytes/maxPooledBody + 2 {
		bufs = append(bufs, p.get(maxPooledBody))
	}
	for _, b := range bufs {
		p.put(b)
	}
	if p.freeBytes > maxFreeBytes || len(p.free) > p.maxFree {
		t.Fatalf("the pool keeps %d buffers, %d bytes unused; bounds %d, %d", len(p.free), p.freeBytes, p.maxFree, maxFreeBytes)
	}
	for _, b := range p.free {
		if cap(b) != maxPooledBody {
			t.Fatalf("the pool kept a %d-byte buffer over the %d-byte ones", cap(b), maxPooledBody)
		}
	}
}

func TestWritePoolKeepsOnlyLargeBuffers(t *testing.T) {
	p := newWritePool()
	for _, tt := range []struct {
		n    int
		kept bool
	}{
		{n: keepWriteBytes},
		{n: keepWriteBytes + 1, kept: true},
		{n: maxPooledWrite, kept: true},
		{n: maxPooledWrite + 1},
	} {
		b := p.get(tt.n)
		p.put(b)
		again := p.get(tt.n)
		if reused := &again[0] == &b[0]; reused != tt.kept {
			t.Errorf("a %d-byte buffer reused: %v, want %v", tt.n, reused, tt.kept)
		}
	}
}

func TestBufPoolRefusesABufferTwice(t *testing.T) {
	p := newRecordSetPool()
	b := p.get(minPooledBody)
	p.put(b)
	defer func() {
		if recover() == nil {
			t.Fatal("a buffer given back twice was taken")
		}
	}()
	p.put(b)
}
