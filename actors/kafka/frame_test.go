package kafka

import "testing"

func TestBodyPoolClasses(t *testing.T) {
	tests := []struct {
		n       int
		wantCap int // 0: not pooled, allocated to its size
	}{
		{n: 0},
		{n: minPooledBody - 1},
		{n: minPooledBody, wantCap: minPooledBody},
		{n: minPooledBody + 1, wantCap: 2 * minPooledBody},
		{n: 3 << 20, wantCap: 4 << 20},
		{n: maxPooledBody, wantCap: maxPooledBody},
		{n: maxPooledBody + 1},
	}
	for _, tt := range tests {
		for _, pool := range []*bodyPool{newBodyPool(), nil} {
			b := pool.get(tt.n)
			want := tt.wantCap
			if want == 0 || pool == nil {
				want = tt.n
			}
			if len(b) != tt.n || cap(b) != want {
				t.Errorf("get(%d) from pool %p: len %d cap %d, want len %d cap %d", tt.n, pool, len(b), cap(b), tt.n, want)
			}
			pool.put(b) // never panics, whatever it is given
		}
	}
	if maxPooledBody != exactSize {
		t.Fatalf("the largest pooled body is %d bytes, the largest body read at once %d", maxPooledBody, exactSize)
	}
}

func TestBodyPoolReuse(t *testing.T) {
	p := newBodyPool()
	a := p.get(3 << 20)
	p.put(a)
	if b := p.get(2<<20 + 1); &b[0] != &a[0] || len(b) != 2<<20+1 {
		t.Fatal("a buffer given back is not reused for a body of its class")
	}
	if b := p.get(3 << 20); &b[0] == &a[0] {
		t.Fatal("a buffer handed out twice")
	}
	// A buffer whose capacity is not a class's is not kept: get would
	// hand it out as a bigger class than it is.
	p.put(make([]byte, 0, minPooledBody+1))
	if b := p.get(2 * minPooledBody); cap(b) != 2*minPooledBody {
		t.Fatalf("get(%d) returned a buffer of capacity %d", 2*minPooledBody, cap(b))
	}
	// What the pool keeps unused is bounded.
	var bufs [][]byte
	for range 2*maxFreeBodies/maxPooledBody + 1 {
		bufs = append(bufs, p.get(maxPooledBody))
	}
	for _, b := range bufs {
		p.put(b)
	}
	if p.freeBytes > maxFreeBodies {
		t.Fatalf("the pool keeps %d bytes unused, more than %d", p.freeBytes, maxFreeBodies)
	}
	if p.freeBytes != maxFreeBodies {
		t.Fatalf("the pool keeps %d bytes unused, want it full at %d", p.freeBytes, maxFreeBodies)
	}
}
