// Package hotmod is the hotmod plugin SDK for Go.
//
// A Go plugin is a main package built with `go build -buildmode=c-shared`.
// It registers itself from an init function, and the SDK builds the ABI v1
// descriptor and exports the entry symbol hotmod_plugin_v1:
//
//	package main
//
//	import hotmod "hotmod.dev/sdk/go"
//
//	func length(in []byte, out *hotmod.Output) error {
//		var b [8]byte
//		binary.LittleEndian.PutUint64(b[:], uint64(len(in)))
//		return out.Set(b[:])
//	}
//
//	func init() {
//		hotmod.Register(hotmod.Plugin{
//			Name: "gochecksum", Version: "1.0.0",
//			Methods: []hotmod.Method{
//				{Name: "length", Signature: "bytes -> u64le", Func: length},
//			},
//		})
//	}
//
//	func main() {}
//
// # What the SDK guarantees
//
// The descriptor, its strings and its method and dependency tables are C
// memory allocated once by Register and never freed; the instance pointer
// the runtime holds is C memory too. C never keeps a Go pointer.
//
// Every method and hook runs behind recover: a panic becomes the status
// HOTMOD_PLUGIN_PANICKED (hotmod status 2004, PluginPanicked, in the host)
// with the panic text and the place it was raised as the error message, and
// the host keeps running. A method's non-nil error becomes
// HOTMOD_PLUGIN_ERROR (2003, PluginError) with err.Error() as the message,
// or HOTMOD_PLUGIN_INVALID_INPUT for errors made by InvalidInput. A panic
// in a goroutine the plugin started itself is outside any call and still
// ends the process, as in any Go program.
//
// # Unloading
//
// A Go shared library can never be unmapped: the Go runtime marks it
// DF_1_NODELETE, and its threads keep running after the last call. The SDK
// therefore never sets HOTMOD_PLUGIN_FLAG_SAFE_TO_UNLOAD, and every
// version a host loads stays mapped (with its own Go runtime: threads and
// heap) until the process exits. Hosts that upgrade Go plugins often should
// run them out of process.
//
// # Threads
//
// Methods are called on the host's threads, possibly many at once. Each call
// from a thread the Go runtime did not create pays cgo's C-to-Go transition.
// The input slice given to a method is the host's memory, valid only until
// the method returns: copy what must be kept.
package hotmod

/*
#cgo CFLAGS: -I${SRCDIR}/../../include -O2
#include "bridge.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"
)

// MaxMethods is the most methods one plugin may register.
const MaxMethods = C.HOTMOD_GO_MAX_METHODS

// Log levels for Host.Log.
const (
	LogError = LogLevel(C.HOTMOD_LOG_ERROR)
	LogWarn  = LogLevel(C.HOTMOD_LOG_WARN)
	LogInfo  = LogLevel(C.HOTMOD_LOG_INFO)
	LogDebug = LogLevel(C.HOTMOD_LOG_DEBUG)
)

// LogLevel is the level of a log line sent to the host.
type LogLevel int32

// Method is one method a plugin offers. Exactly one of Func and Bytes is set.
type Method struct {
	// Name is unique within the plugin (non-empty UTF-8, no NUL byte).
	Name string
	// Signature is a free-form description such as "bytes -> u64le"; the
	// runtime hashes it with the name to tell callers when an upgrade
	// changes it.
	Signature string
	// Func writes its result through out (Output.Set, Output.Alloc, …).
	Func func(in []byte, out *Output) error
	// Bytes returns its result; the SDK copies it once, into the host's
	// space when it fits, otherwise into C memory handed to the host.
	Bytes func(in []byte) ([]byte, error)
}

// Dependency is another module this plugin needs.
type Dependency struct {
	// Name of the module.
	Name string
	// Range is a semver requirement on its version, such as "^1.2".
	Range string
	// Optional dependencies may be absent when this plugin loads.
	Optional bool
}

// Plugin declares a plugin: its identity, methods and lifecycle hooks. Hooks
// are optional. A copy of the library holds one instance: the runtime maps
// a private copy of the file for every load.
type Plugin struct {
	// Name of the module (non-empty UTF-8, no NUL byte).
	Name string
	// Version is a semantic version such as "1.4.0".
	Version string
	// Description is one line of text, or empty.
	Description string
	// Dependencies are the modules this plugin may call through
	// Host.CallModule.
	Dependencies []Dependency
	// Methods the plugin offers, at most MaxMethods.
	Methods []Method

	// Init receives the host's services and the per-plugin configuration
	// (borrowed: copy it to keep it). An error refuses the load.
	Init func(host *Host, config []byte) error
	// Activate runs before the version serves calls; an error refuses.
	Activate func() error
	// Deactivate runs after the version served its last call.
	Deactivate func()
	// Destroy runs once, last.
	Destroy func()
	// ExportState returns state for the next version during an upgrade.
	ExportState func() ([]byte, error)
	// ImportState receives the previous version's state (borrowed) before
	// this version is published.
	ImportState func(state []byte) error
}

// method is what the call path reads: the two kinds of function and the
// name for messages. Read-only after Register.
type method struct {
	fn    func(in []byte, out *Output) error
	bytes func(in []byte) ([]byte, error)
	name  string
}

var (
	registered bool
	plugin     Plugin
	methods    []method
	descriptor *C.hotmod_plugin_descriptor
)

// Register declares the plugin. Call it once, from an init function of the
// main package. A declaration the SDK cannot turn into a descriptor (too
// many methods, a NUL byte in a name, a method with no function) is
// reported on standard error and the library then exports no descriptor, so
// the runtime refuses it without running any of its code.
func Register(p Plugin) {
	if registered {
		fmt.Fprintf(os.Stderr, "hotmod Go plugin %q: Register called twice; expected once, from an init function\n", p.Name)
		descriptor = nil
		return
	}
	registered = true
	if err := check(&p); err != nil {
		fmt.Fprintf(os.Stderr, "hotmod Go plugin %q: %v; the library exports no descriptor\n", p.Name, err)
		return
	}
	plugin = p
	methods = make([]method, len(p.Methods))
	for i, m := range p.Methods {
		methods[i] = method{fn: m.Func, bytes: m.Bytes, name: m.Name}
	}
	descriptor = build(&p)
}

func check(p *Plugin) error {
	strs := []struct{ what, s string }{{"name", p.Name}, {"version", p.Version}, {"description", p.Description}}
	for _, d := range p.Dependencies {
		strs = append(strs, struct{ what, s string }{"dependency name", d.Name}, struct{ what, s string }{"dependency range", d.Range})
	}
	for _, m := range p.Methods {
		strs = append(strs, struct{ what, s string }{"method name", m.Name}, struct{ what, s string }{"method signature", m.Signature})
	}
	for _, s := range strs {
		if strings.IndexByte(s.s, 0) >= 0 {
			return fmt.Errorf("expected a %s without NUL bytes, found %q", s.what, s.s)
		}
	}
	if len(p.Methods) > MaxMethods {
		return fmt.Errorf("expected at most %d methods, found %d", MaxMethods, len(p.Methods))
	}
	for _, m := range p.Methods {
		if (m.Func == nil) == (m.Bytes == nil) {
			return fmt.Errorf("method %q: expected exactly one of Func and Bytes, found %s", m.Name,
				map[bool]string{true: "neither", false: "both"}[m.Func == nil])
		}
	}
	return nil
}

// cstr returns s as a NUL-terminated string in C memory that is never freed
// (NULL for the empty string when nullIfEmpty).
func cstr(s string, nullIfEmpty bool) *C.char {
	if s == "" && nullIfEmpty {
		return nil
	}
	return C.CString(s)
}

// build lays the descriptor out in C memory, once.
func build(p *Plugin) *C.hotmod_plugin_descriptor {
	d := (*C.hotmod_plugin_descriptor)(C.calloc(1, C.sizeof_hotmod_plugin_descriptor))
	if d == nil {
		return nil
	}
	d.magic = C.HOTMOD_PLUGIN_MAGIC
	d.abi_major = C.HOTMOD_ABI_MAJOR
	d.abi_minor = C.HOTMOD_ABI_MINOR
	d.descriptor_size = C.sizeof_hotmod_plugin_descriptor
	// Never HOTMOD_PLUGIN_FLAG_SAFE_TO_UNLOAD: a Go library cannot be unmapped.
	d.flags = 0
	d.name = cstr(p.Name, false)
	d.version = cstr(p.Version, false)
	d.description = cstr(p.Description, true)
	if n := len(p.Dependencies); n > 0 {
		deps := unsafe.Slice((*C.hotmod_dependency_def)(C.calloc(C.size_t(n), C.sizeof_hotmod_dependency_def)), n)
		for i, dep := range p.Dependencies {
			deps[i].name = cstr(dep.Name, false)
			deps[i].version_req = cstr(dep.Range, false)
			if dep.Optional {
				deps[i].flags = C.HOTMOD_DEPENDENCY_OPTIONAL
			}
		}
		d.dependencies = &deps[0]
		d.dependency_count = C.size_t(n)
	}
	if n := len(p.Methods); n > 0 {
		defs := unsafe.Slice((*C.hotmod_method_def)(C.calloc(C.size_t(n), C.sizeof_hotmod_method_def)), n)
		for i, m := range p.Methods {
			defs[i].name = cstr(m.Name, false)
			defs[i].signature = cstr(m.Signature, false)
			defs[i]._func = C.hotmod_go_method_fn(C.size_t(i))
		}
		d.methods = &defs[0]
		d.method_count = C.size_t(n)
	}
	var mask C.uint
	if p.Activate != nil {
		mask |= C.HOTMOD_GO_HOOK_ACTIVATE
	}
	if p.Deactivate != nil {
		mask |= C.HOTMOD_GO_HOOK_DEACTIVATE
	}
	if p.ExportState != nil {
		mask |= C.HOTMOD_GO_HOOK_EXPORT
	}
	if p.ImportState != nil {
		mask |= C.HOTMOD_GO_HOOK_IMPORT
	}
	C.hotmod_go_set_hooks(d, mask)
	return d
}

// invalidInput marks an error as HOTMOD_PLUGIN_INVALID_INPUT.
type invalidInput struct{ msg string }

func (e *invalidInput) Error() string { return e.msg }

// InvalidInput returns an error that makes a method fail with
// HOTMOD_PLUGIN_INVALID_INPUT: the input is not what the method accepts.
func InvalidInput(format string, args ...any) error {
	return &invalidInput{msg: fmt.Sprintf(format, args...)}
}

// status is the plugin status a method's error maps to.
func status(err error) C.int32_t {
	var ii *invalidInput
	if errors.As(err, &ii) {
		return C.HOTMOD_PLUGIN_INVALID_INPUT
	}
	return C.HOTMOD_PLUGIN_ERROR
}
