#!/usr/bin/env node
// Per-call cost of a synchronous hotmod call from Node, against the same
// plugin function called through koffi (a generic FFI) and against a no-op
// napi-rs function (the floor of any native call), for 16 B, 64 KiB and
// 1 MiB inputs. The method is checksum.length, which reads no payload byte,
// so the plugin's work is constant and any growth with size is copying.
//
// One run, all cases interleaved round by round (so load from other
// processes hits them alike); the table shows the median of the rounds and
// the ratios the design targets. Results also go to bench/results.json.
//
//   node bench/bench.js [--rounds N] [--iterations N]
'use strict'

const fs = require('node:fs')
const path = require('node:path')
const koffi = require('koffi')
const hotmod = require('..')

const args = process.argv.slice(2)
const opt = (name, dflt) => {
  const i = args.indexOf(name)
  return i >= 0 ? Number(args[i + 1]) : dflt
}
const ROUNDS = opt('--rounds', 15)
const ITERATIONS = opt('--iterations', 50000)
const pluginDir = process.env.HOTMOD_PLUGIN_DIR || path.resolve(__dirname, '../../../build/plugins')
const checksumPath = path.join(pluginDir, 'libchecksum.so')
if (!fs.existsSync(checksumPath)) {
  console.error(`bench: ${checksumPath} is missing: run make -C ${path.resolve(__dirname, '../../..')} plugins`)
  process.exit(1)
}

// --- hotmod -----------------------------------------------------------------
const rt = new hotmod.Runtime()
rt.load(checksumPath)
rt.load(path.join(pluginDir, 'libprobe.so'))
const length = rt.method('checksum', 'length')

// --- koffi: the same function, reached the way a koffi host would ---------
// Load the library, call hotmod_plugin_v1, read the descriptor and its method
// table, run init, and call the method's function pointer. The method takes
// (void *instance, hotmod_slice input, hotmod_output *out); a 16-byte
// {ptr, len} struct passed by value travels in two integer registers on
// x86-64 and arm64, so it is declared as two arguments, which lets koffi pass
// the Buffer's memory directly (no copy). The output slot is a 48-byte
// Buffer whose `buf` field points at a scratch Buffer, as hotmod offers.
const Descriptor = koffi.struct({
  magic: 'uint32_t', abi_major: 'uint16_t', abi_minor: 'uint16_t', descriptor_size: 'uint32_t', flags: 'uint32_t',
  name: 'const char *', version: 'const char *', description: 'const char *',
  dependencies: 'void *', dependency_count: 'size_t', methods: 'void *', method_count: 'size_t',
  init: 'void *', activate: 'void *', deactivate: 'void *', destroy: 'void *', export_state: 'void *', import_state: 'void *',
})
const MethodDef = koffi.struct({ name: 'const char *', signature: 'const char *', func: 'void *' })
const Init = koffi.proto('int32_t hotmod_init_fn(void *host, const uint8_t *cfg, size_t cfg_len, _Out_ void **instance)')
const MethodFn = koffi.proto('int32_t hotmod_method_fn(void *instance, const uint8_t *in_ptr, size_t in_len, void *out)')

function koffiPlugin(file) {
  const lib = koffi.load(file)
  const entry = lib.func('void *hotmod_plugin_v1(void)')
  const desc = koffi.decode(entry(), Descriptor)
  const defs = koffi.decode(desc.methods, koffi.array(MethodDef, Number(desc.method_count)))
  const instance = [null]
  if (desc.init && koffi.call(desc.init, Init, null, null, 0, instance) !== 0) throw new Error('koffi: init failed')
  const fns = Object.fromEntries(defs.map((d) => [d.name, koffi.decode(d.func, MethodFn)]))
  return { name: desc.name, instance: instance[0], fns }
}

const kChecksum = koffiPlugin(checksumPath)
const kProbe = koffiPlugin(path.join(pluginDir, 'libprobe.so'))
const kScratch = Buffer.alloc(256)
const kScratchAddr = koffi.address(kScratch)
const kOut = Buffer.alloc(48)

// A complete call, as a careful koffi host must make it: reset the output
// slot, call, check the status, check that the bytes are in the offered
// buffer (this baseline does not handle plugin memory), and copy them into a
// Buffer of their own — what hotmod's callSync returns. Written for speed:
// the offered buffer is set once, fields are read as 32-bit halves (BigInt
// reads cost more), and small results are copied byte by byte.
kOut.writeBigUInt64LE(kScratchAddr, 0)
kOut.writeBigUInt64LE(BigInt(kScratch.length), 8)
const kAddrLo = Number(kScratchAddr & 0xffffffffn)
const kAddrHi = Number(kScratchAddr >> 32n)
function koffiCall(plugin, method, input) {
  kOut.fill(0, 16)
  const rc = plugin.fns[method](plugin.instance, input, input.length, kOut)
  if (rc !== 0) throw new Error(`koffi: ${method} returned ${rc}`)
  if (kOut.readUInt32LE(16) !== kAddrLo || kOut.readUInt32LE(20) !== kAddrHi || kOut.readUInt32LE(28) !== 0) {
    throw new Error('koffi: plugin memory is not handled by this baseline')
  }
  const n = kOut.readUInt32LE(24)
  const out = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) out[i] = kScratch[i]
  return out
}

// The bare call: the result stays in the scratch buffer (no checks, no copy);
// the counterpart of hotmod's callSyncInto.
const kLength = kChecksum.fns.length
const kInst = kChecksum.instance
function koffiRaw(input) {
  return kLength(kInst, input, input.length, kOut)
}

// --- checks: both paths call the same code on the same memory --------------
const sizes = [16, 64 * 1024, 1024 * 1024]
const inputs = sizes.map((n) => Buffer.alloc(n, 1))
const target = Buffer.alloc(8)
for (const input of inputs) {
  const want = BigInt(input.length)
  const got = [
    length.callSync(input).readBigUInt64LE(),
    koffiCall(kChecksum, 'length', input).readBigUInt64LE(),
    (length.callSyncInto(input, target), target.readBigUInt64LE()),
    rt.callSync('checksum', 'length', input).readBigUInt64LE(),
  ]
  for (const g of got) if (g !== want) throw new Error(`length of ${input.length} bytes answered ${g}`)
  const addr = hotmod.bufferAddress(input)
  if (rt.callSync('probe', 'addr', input).readBigUInt64LE() !== addr) throw new Error('hotmod copied the input')
  if (koffiCall(kProbe, 'addr', input).readBigUInt64LE() !== addr) throw new Error('koffi copied the input')
}

// --- measurement ------------------------------------------------------------
const cases = []
for (const [i, size] of sizes.entries()) {
  const input = inputs[i]
  cases.push(
    { size, name: 'napi-rs no-op (floor)', fn: () => hotmod.__noop(input) },
    { size, name: 'hotmod handle.callSync', fn: () => length.callSync(input) },
    { size, name: 'hotmod handle.callSyncInto', fn: () => length.callSyncInto(input, target) },
    { size, name: 'hotmod runtime.callSync (by name)', fn: () => rt.callSync('checksum', 'length', input) },
    { size, name: 'koffi call + result Buffer', fn: () => koffiCall(kChecksum, 'length', input) },
    { size, name: 'koffi bare call', fn: () => koffiRaw(input) }
  )
}

function time(fn, n) {
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) fn()
  return Number(process.hrtime.bigint() - t0) / n
}

for (const c of cases) {
  time(c.fn, ITERATIONS) // warm up (JIT, caches)
  c.samples = []
}
for (let r = 0; r < ROUNDS; r++) {
  for (const c of cases) c.samples.push(time(c.fn, ITERATIONS))
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
for (const c of cases) {
  c.median = median(c.samples)
  c.min = Math.min(...c.samples)
}

// --- report -----------------------------------------------------------------
const fmtSize = (n) => (n >= 1 << 20 ? `${n >> 20} MiB` : n >= 1024 ? `${n >> 10} KiB` : `${n} B`)
const get = (size, name) => cases.find((c) => c.size === size && c.name === name).median
console.log(`hotmod Node benchmark: checksum.length, ${ROUNDS} rounds x ${ITERATIONS} calls, median ns/call (min)`)
console.log(`node ${process.version}, koffi ${koffi.version}, ${process.platform}-${process.arch}\n`)
const names = [...new Set(cases.map((c) => c.name))]
const w = Math.max(...names.map((n) => n.length))
console.log(`${'case'.padEnd(w)}  ${sizes.map((s) => fmtSize(s).padStart(16)).join('')}`)
for (const name of names) {
  const cells = sizes.map((s) => {
    const c = cases.find((x) => x.size === s && x.name === name)
    return `${c.median.toFixed(0)} (${c.min.toFixed(0)})`.padStart(16)
  })
  console.log(`${name.padEnd(w)}  ${cells.join('')}`)
}

const ratios = []
for (const s of sizes) {
  ratios.push({
    what: `callSync / koffi call + result Buffer, ${fmtSize(s)}`,
    value: get(s, 'hotmod handle.callSync') / get(s, 'koffi call + result Buffer'),
    target: '<= 1',
  })
}
for (const s of sizes) {
  ratios.push({
    what: `callSyncInto / koffi bare call, ${fmtSize(s)}`,
    value: get(s, 'hotmod handle.callSyncInto') / get(s, 'koffi bare call'),
    target: '(reported)',
  })
}
for (const s of sizes) {
  ratios.push({
    what: `callSync / napi-rs no-op floor, ${fmtSize(s)}`,
    value: get(s, 'hotmod handle.callSync') / get(s, 'napi-rs no-op (floor)'),
    target: s === 64 * 1024 ? '(reported)' : '<= 1.5',
  })
}
for (const s of sizes.slice(1)) {
  ratios.push({
    what: `callSync ${fmtSize(s)} / callSync 16 B`,
    value: get(s, 'hotmod handle.callSync') / get(16, 'hotmod handle.callSync'),
    target: s === 1 << 20 ? '<= 1.2' : '(reported)',
  })
}
console.log('\nratios')
const rw = Math.max(...ratios.map((r) => r.what.length))
for (const r of ratios) {
  let verdict = ''
  if (r.target.startsWith('<=')) verdict = r.value <= Number(r.target.slice(2)) ? '  met' : '  NOT met'
  console.log(`${r.what.padEnd(rw)}  ${r.value.toFixed(2).padStart(6)}  target ${r.target}${verdict}`)
}

const out = path.join(__dirname, 'results.json')
fs.writeFileSync(
  out,
  JSON.stringify(
    {
      node: process.version,
      koffi: koffi.version,
      rounds: ROUNDS,
      iterations: ITERATIONS,
      cases: cases.map(({ size, name, median, min, samples }) => ({ size, name, median_ns: median, min_ns: min, samples_ns: samples })),
      ratios,
    },
    null,
    2
  ) + '\n'
)
console.log(`\nwritten: ${path.relative(process.cwd(), out)}`)
rt.close()
