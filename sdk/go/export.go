package hotmod

// The functions the C side calls: the entry symbol, the method call path
// and the lifecycle hooks. Every one runs behind recover. (A file with
// //export may only declare things in its preamble.)

/*
#include "bridge.h"
*/
import "C"

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"unsafe"
)

// live is set while the one instance of this copy of the library exists.
var live atomic.Bool

// theHost is the host table of the live instance, as given to Init.
var theHost Host

//export hotmod_plugin_v1
func hotmod_plugin_v1() *C.hotmod_plugin_descriptor {
	return descriptor
}

// view is the bytes of a borrowed C slice, without a copy.
func view(s C.hotmod_slice) []byte {
	if s.len == 0 || s.ptr == nil {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(s.ptr)), int(s.len))
}

// hostOf is the host table an instance pointer carries.
func hostOf(inst unsafe.Pointer) *C.hotmod_host_api {
	if inst == nil {
		return nil
	}
	return (*C.hotmod_go_instance)(inst).host
}

//export hotmodGoMethod
func hotmodGoMethod(idx C.int, inst unsafe.Pointer, in C.hotmod_slice, out *C.hotmod_output) (rc C.int32_t) {
	m := &methods[idx]
	defer func() {
		if r := recover(); r != nil {
			rc = panicked(hostOf(inst), (*Output)(out), "method '"+m.name+"'", r)
		}
	}()
	var err error
	if m.fn != nil {
		err = m.fn(view(in), (*Output)(out))
	} else {
		var b []byte
		if b, err = m.bytes(view(in)); err == nil {
			err = (*Output)(out).Set(b)
		}
	}
	if err != nil {
		return failed(hostOf(inst), (*Output)(out), err)
	}
	return C.HOTMOD_PLUGIN_OK
}

// failed reports a method's or hook's error: no result, the message for the
// host, the matching status.
func failed(api *C.hotmod_host_api, out *Output, err error) C.int32_t {
	if out != nil {
		out.reset()
	}
	setError(api, err.Error())
	return status(err)
}

// panicked reports a recovered panic: no result, the panic text and where it
// was raised as the message, HOTMOD_PLUGIN_PANICKED.
func panicked(api *C.hotmod_host_api, out *Output, what string, r any) C.int32_t {
	if out != nil {
		out.reset()
	}
	setError(api, panicMessage(what, r))
	return C.HOTMOD_PLUGIN_PANICKED
}

func panicMessage(what string, r any) string {
	var text string
	switch v := r.(type) {
	case error:
		text = v.Error()
	case string:
		text = v
	case fmt.Stringer:
		text = v.String()
	default:
		text = fmt.Sprint(v)
	}
	if site := panicSite(); site != "" {
		return fmt.Sprintf("%s panicked: %s (at %s)", what, text, site)
	}
	return fmt.Sprintf("%s panicked: %s", what, text)
}

// panicSite is the first function below runtime.gopanic that is not part of
// the Go runtime: where the plugin panicked. Called from a deferred
// function while the panicking frames are still on the stack.
func panicSite() string {
	pc := make([]uintptr, 64)
	frames := runtime.CallersFrames(pc[:runtime.Callers(1, pc)])
	below := false
	for {
		f, more := frames.Next()
		if below && !strings.HasPrefix(f.Function, "runtime.") {
			return fmt.Sprintf("%s, %s:%d", f.Function, filepath.Base(f.File), f.Line)
		}
		if f.Function == "runtime.gopanic" {
			below = true
		}
		if !more {
			return ""
		}
	}
}

//export hotmodGoInit
func hotmodGoInit(host *C.hotmod_host_api, config C.hotmod_slice, instance *unsafe.Pointer) (rc C.int32_t) {
	if !live.CompareAndSwap(false, true) {
		setError(host, fmt.Sprintf("Go plugin %q: expected one instance per copy of the library, found one live already "+
			"(the runtime maps a private copy for every load)", plugin.Name))
		return C.HOTMOD_PLUGIN_ERROR
	}
	inst := (*C.hotmod_go_instance)(C.calloc(1, C.sizeof_hotmod_go_instance))
	if inst == nil {
		live.Store(false)
		setError(host, fmt.Sprintf("Go plugin %q: out of memory for the instance", plugin.Name))
		return C.HOTMOD_PLUGIN_ERROR
	}
	inst.host = host
	theHost = Host{api: host}
	ok := false
	defer func() {
		if r := recover(); r != nil {
			rc = panicked(host, nil, "init", r)
		}
		if !ok {
			C.free(unsafe.Pointer(inst))
			live.Store(false)
		}
	}()
	if plugin.Init != nil {
		if err := plugin.Init(&theHost, view(config)); err != nil {
			return failed(host, nil, err)
		}
	}
	*instance = unsafe.Pointer(inst)
	ok = true
	return C.HOTMOD_PLUGIN_OK
}

//export hotmodGoActivate
func hotmodGoActivate(inst unsafe.Pointer) (rc C.int32_t) {
	defer func() {
		if r := recover(); r != nil {
			rc = panicked(hostOf(inst), nil, "activate", r)
		}
	}()
	if err := plugin.Activate(); err != nil {
		return failed(hostOf(inst), nil, err)
	}
	return C.HOTMOD_PLUGIN_OK
}

// logPanic reports a panic in a hook that returns no status.
func logPanic(inst unsafe.Pointer, hook string) {
	if r := recover(); r != nil {
		msg := panicMessage(hook, r)
		C.hotmod_go_log(hostOf(inst), C.HOTMOD_LOG_ERROR, stringData(msg), C.size_t(len(msg)))
	}
}

//export hotmodGoDeactivate
func hotmodGoDeactivate(inst unsafe.Pointer) {
	defer logPanic(inst, "deactivate")
	plugin.Deactivate()
}

//export hotmodGoDestroy
func hotmodGoDestroy(inst unsafe.Pointer) {
	defer func() {
		C.free(inst)
		live.Store(false)
	}()
	defer logPanic(inst, "destroy")
	if plugin.Destroy != nil {
		plugin.Destroy()
	}
}

//export hotmodGoExportState
func hotmodGoExportState(inst unsafe.Pointer, out *C.hotmod_output) (rc C.int32_t) {
	defer func() {
		if r := recover(); r != nil {
			rc = panicked(hostOf(inst), (*Output)(out), "export_state", r)
		}
	}()
	state, err := plugin.ExportState()
	if err == nil && state != nil {
		err = (*Output)(out).Set(state)
	}
	if err != nil {
		return failed(hostOf(inst), (*Output)(out), err)
	}
	return C.HOTMOD_PLUGIN_OK
}

//export hotmodGoImportState
func hotmodGoImportState(inst unsafe.Pointer, state C.hotmod_slice) (rc C.int32_t) {
	defer func() {
		if r := recover(); r != nil {
			rc = panicked(hostOf(inst), nil, "import_state", r)
		}
	}()
	if err := plugin.ImportState(view(state)); err != nil {
		return failed(hostOf(inst), nil, err)
	}
	return C.HOTMOD_PLUGIN_OK
}
