package hotmod

/*
#include "bridge.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Host is the host's services, as received by Plugin.Init. Keep it and use
// it from any goroutine until Destroy returns.
type Host struct {
	api *C.hotmod_host_api
}

// statusOutputTooLarge is hotmod status 2009: the callee needed more space
// than offered and said how much in the output slot.
const statusOutputTooLarge = 2009

// firstOffer is the space offered to a host function or module call before
// retrying with the size it asked for.
const firstOffer = 256

// StatusError is a failed Host.CallHost or Host.CallModule: a hotmod status
// code (see the status table in hotmod.h), for example 2001 when no such
// function or method exists.
type StatusError struct {
	// Op names the call, for example `call_module "checksum.crc32"`.
	Op string
	// Code is the hotmod status code.
	Code int32
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s failed with hotmod status %d", e.Op, e.Code)
}

// Log writes a line to the host's log.
func (h *Host) Log(level LogLevel, msg string) {
	C.hotmod_go_log(h.api, C.int32_t(level), stringData(msg), C.size_t(len(msg)))
}

// Logf formats and writes a line to the host's log.
func (h *Host) Logf(level LogLevel, format string, args ...any) {
	h.Log(level, fmt.Sprintf(format, args...))
}

// CallHost calls the function the host program registered under name, and
// returns a copy of its result.
func (h *Host) CallHost(name string, in []byte) ([]byte, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	return callWithSlot("call_host \""+name+"\"", func(out *C.hotmod_output) C.int32_t {
		return C.hotmod_go_call_host(h.api, cname, bytesData(in), C.size_t(len(in)), out)
	})
}

// CallModule calls method of module, one of the plugin's declared
// dependencies (its active version, across upgrades), and returns a copy of
// its result.
func (h *Host) CallModule(module, method string, in []byte) ([]byte, error) {
	cmod, cmeth := C.CString(module), C.CString(method)
	defer C.free(unsafe.Pointer(cmod))
	defer C.free(unsafe.Pointer(cmeth))
	return callWithSlot("call_module \""+module+"."+method+"\"", func(out *C.hotmod_output) C.int32_t {
		return C.hotmod_go_call_module(h.api, cmod, cmeth, bytesData(in), C.size_t(len(in)), out)
	})
}

// callWithSlot runs a call with an output slot and offered space in C
// memory (a slot holding a Go pointer may not be passed to C), retrying
// once with the size asked for, and copies the result out.
func callWithSlot(op string, call func(out *C.hotmod_output) C.int32_t) ([]byte, error) {
	offer := C.size_t(firstOffer)
	for attempt := 0; ; attempt++ {
		mem := C.calloc(1, C.sizeof_hotmod_output+offer)
		if mem == nil {
			return nil, fmt.Errorf("%s: out of memory for a %d-byte output", op, offer)
		}
		out := (*C.hotmod_output)(mem)
		out.buf = (*C.uint8_t)(unsafe.Add(mem, C.sizeof_hotmod_output))
		out.capacity = offer
		rc := call(out)
		if rc == statusOutputTooLarge && attempt == 0 && out.len > offer {
			offer = out.len
			C.hotmod_go_release_output(out)
			C.free(mem)
			continue
		}
		var res []byte
		var err error
		if rc != 0 {
			err = &StatusError{Op: op, Code: int32(rc)}
		} else if out.len > 0 {
			res = make([]byte, int(out.len))
			copy(res, unsafe.Slice((*byte)(unsafe.Pointer(out.data)), int(out.len)))
		} else {
			res = []byte{}
		}
		C.hotmod_go_release_output(out)
		C.free(mem)
		return res, err
	}
}

// setError sets the message of the call in progress on this thread.
func setError(api *C.hotmod_host_api, msg string) {
	C.hotmod_go_set_error(api, stringData(msg), C.size_t(len(msg)))
}

// stringData is the address of s's bytes, for a C call that only reads
// them during the call (string bytes hold no Go pointers).
func stringData(s string) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return *(*unsafe.Pointer)(unsafe.Pointer(&s))
}

// bytesData is the address of b's first byte, or nil.
func bytesData(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}
