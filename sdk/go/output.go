package hotmod

/*
#include "bridge.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Output is the output slot of one call: the space the host offered and the
// result. It is valid only until the method returns. Each of Set,
// SetString, Alloc and SetStatic replaces the result set before.
type Output C.hotmod_output

// Capacity is the number of bytes the host offered; results up to this size
// are written straight into the host's memory.
func (o *Output) Capacity() int {
	if o.buf == nil {
		return 0
	}
	return int(o.capacity)
}

// Set makes a copy of b the result: one copy, into the host's space when it
// fits, otherwise into C memory that is handed to the host, which releases
// it (so the method never runs twice for want of space).
func (o *Output) Set(b []byte) error {
	dst, err := o.Alloc(len(b))
	if err != nil {
		return err
	}
	copy(dst, b)
	return nil
}

// SetString is Set for a string.
func (o *Output) SetString(s string) error {
	dst, err := o.Alloc(len(s))
	if err != nil {
		return err
	}
	copy(dst, s)
	return nil
}

// Alloc returns n bytes of output space for the method to fill in place;
// those n bytes are the result. The space is the host's own when n fits in
// Capacity, otherwise C memory handed over to the host without a copy (the
// zero-copy path). Do not keep the slice after the method returns.
func (o *Output) Alloc(n int) ([]byte, error) {
	o.reset()
	switch {
	case n < 0:
		return nil, fmt.Errorf("hotmod: Output.Alloc: expected a size >= 0, found %d", n)
	case n == 0:
		o.data = o.buf
		return []byte{}, nil
	case o.buf != nil && n <= int(o.capacity):
		o.data = o.buf
		o.len = C.size_t(n)
		return unsafe.Slice((*byte)(unsafe.Pointer(o.buf)), n), nil
	}
	p := C.malloc(C.size_t(n))
	if p == nil {
		return nil, fmt.Errorf("hotmod: Output.Alloc: out of memory for %d bytes of output", n)
	}
	o.data = (*C.uint8_t)(p)
	o.len = C.size_t(n)
	o.release = C.hotmod_release_fn(C.hotmod_go_release)
	o.release_ctx = p
	return unsafe.Slice((*byte)(p), n), nil
}

// SetStatic makes s the result without copying it: the host reads the
// static bytes in place and releases nothing.
func (o *Output) SetStatic(s Static) {
	o.reset()
	o.data = s.p
	o.len = s.n
}

// reset drops a result set before: memory the SDK allocated is freed here,
// before the host ever saw it.
func (o *Output) reset() {
	if o.release != nil {
		C.hotmod_go_release_output((*C.hotmod_output)(o))
	}
	o.data = nil
	o.len = 0
	o.release_ctx = nil
}

// Static is a byte string in C memory that is never freed, for results that
// never change (a version string, a table): Output.SetStatic hands it to the
// host with no copy and no release.
type Static struct {
	p *C.uint8_t
	n C.size_t
}

// NewStatic copies b once into C memory that lives as long as the process
// (a Go library is never unmapped). Call it at init, not per call.
func NewStatic(b []byte) Static {
	if len(b) == 0 {
		return Static{}
	}
	return Static{p: (*C.uint8_t)(C.CBytes(b)), n: C.size_t(len(b))}
}

// Len is the number of bytes in s.
func (s Static) Len() int { return int(s.n) }
