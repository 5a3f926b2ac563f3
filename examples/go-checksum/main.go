// Example hotmod plugin in Go: module "gochecksum", the Go twin of the C
// example examples/c-checksum, written with the Go SDK (sdk/go).
//
// Built by `make plugins` with `go build -buildmode=c-shared` twice: as
// version 1.0.0 (libgochecksum.so) and, with -ldflags "-X main.version=2.0.0",
// as 2.0.0 (libgochecksum-v2.so), to show hot upgrades. Each version hands
// its call counter to the next through ExportState/ImportState.
//
// Methods:
//
//	length   bytes -> u64le   the input's length (reads no payload byte)
//	fnv1a64  bytes -> u64le   FNV-1a 64-bit
//	crc32    bytes -> u32le   CRC-32 (IEEE), from Go's hash/crc32
//	upper    bytes -> bytes   ASCII upper case, written in place (host space
//	                          when it fits, else C memory handed over)
//	hex      bytes -> ascii   lowercase hex (Bytes form: returns a []byte)
//	version  () -> ascii      "1.0.0" or "2.0.0", static C memory, no copy
//	calls    () -> u64le      calls served by this module, across upgrades
package main

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"sync/atomic"

	hotmod "hotmod.dev/sdk/go"
)

// version is set at link time for the second build (-X main.version=2.0.0).
var version = "1.0.0"

var (
	host        *hotmod.Host
	calls       atomic.Uint64
	versionText hotmod.Static
)

func putU64(out *hotmod.Output, v uint64) error {
	b, err := out.Alloc(8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(b, v)
	return nil
}

func length(in []byte, out *hotmod.Output) error {
	calls.Add(1)
	return putU64(out, uint64(len(in)))
}

func fnv1a64(in []byte, out *hotmod.Output) error {
	calls.Add(1)
	h := uint64(0xcbf29ce484222325)
	for _, c := range in {
		h = (h ^ uint64(c)) * 0x100000001b3
	}
	return putU64(out, h)
}

func crc(in []byte, out *hotmod.Output) error {
	calls.Add(1)
	b, err := out.Alloc(4)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(b, crc32.ChecksumIEEE(in))
	return nil
}

func upper(in []byte, out *hotmod.Output) error {
	calls.Add(1)
	b, err := out.Alloc(len(in))
	if err != nil {
		return err
	}
	for i, c := range in {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b[i] = c
	}
	return nil
}

func hexOf(in []byte) ([]byte, error) {
	calls.Add(1)
	return []byte(hex.EncodeToString(in)), nil
}

func versionOf(_ []byte, out *hotmod.Output) error {
	calls.Add(1)
	out.SetStatic(versionText)
	return nil
}

func callCount(_ []byte, out *hotmod.Output) error {
	return putU64(out, calls.Add(1))
}

func init() {
	versionText = hotmod.NewStatic([]byte(version))
	hotmod.Register(hotmod.Plugin{
		Name:        "gochecksum",
		Version:     version,
		Description: "Checksums and hex encoding (Go example)",
		Methods: []hotmod.Method{
			{Name: "length", Signature: "bytes -> u64le", Func: length},
			{Name: "fnv1a64", Signature: "bytes -> u64le", Func: fnv1a64},
			{Name: "crc32", Signature: "bytes -> u32le", Func: crc},
			{Name: "upper", Signature: "bytes -> bytes", Func: upper},
			{Name: "hex", Signature: "bytes -> ascii", Bytes: hexOf},
			{Name: "version", Signature: "() -> ascii", Func: versionOf},
			{Name: "calls", Signature: "() -> u64le", Func: callCount},
		},
		Init: func(h *hotmod.Host, _ []byte) error {
			host = h
			host.Logf(hotmod.LogInfo, "gochecksum %s ready", version)
			return nil
		},
		ExportState: func() ([]byte, error) {
			return binary.LittleEndian.AppendUint64(nil, calls.Load()), nil
		},
		ImportState: func(state []byte) error {
			if len(state) != 8 {
				return fmt.Errorf("gochecksum: expected 8 bytes of state, found %d", len(state))
			}
			calls.Store(binary.LittleEndian.Uint64(state))
			return nil
		},
	})
}

func main() {}
