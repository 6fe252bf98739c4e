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
	p := newBodyPool()
	for _, tt := range tests {
		for _, pool := range []*bodyPool{p, nil} {
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
	// A buffer whose capacity is not a class's is not kept: get would
	// hand it out as a bigger class than it is.
	p.put(make([]byte, 0, minPooledBody+1))
	for range 100 {
		if b := p.get(2 * minPooledBody); cap(b) != 2*minPooledBody {
			t.Fatalf("get(%d) returned a buffer of capacity %d", 2*minPooledBody, cap(b))
		}
	}
	if maxPooledBody != exactSize {
		t.Fatalf("the largest pooled body is %d bytes, the largest body read at once %d", maxPooledBody, exactSize)
	}
}
