// Synchronous and asynchronous calls, by handle, by module and by name;
// input kinds; callSyncInto; call errors; statistics.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { hotmod, plugin, throwsCode, rejectsCode } = require('./helpers')

const { Runtime, Status } = hotmod

function fresh() {
  const rt = new Runtime()
  rt.load(plugin('libchecksum.so'))
  rt.load(plugin('libtext.so'))
  rt.load(plugin('libprobe.so'))
  rt.load(plugin('liblifecycle.so'))
  return rt
}

const CRC_HELLO = Buffer.from([0x86, 0xa6, 0x10, 0x36]) // crc32("hello"), little-endian

test('sync and async calls, by handle, by module and by name, agree', async () => {
  const rt = fresh()
  const crc = rt.method('checksum', 'crc32')
  const m = rt.module('checksum')
  const input = Buffer.from('hello')
  assert.deepEqual(crc.callSync(input), CRC_HELLO)
  assert.deepEqual(m.callSync('crc32', input), CRC_HELLO)
  assert.deepEqual(rt.callSync('checksum', 'crc32', input), CRC_HELLO)
  assert.deepEqual(await crc.call(input), CRC_HELLO)
  assert.deepEqual(await m.call('crc32', input), CRC_HELLO)
  assert.deepEqual(await rt.call('checksum', 'crc32', input), CRC_HELLO)
  for (const out of [crc.callSync(input), await crc.call(input)]) assert.ok(Buffer.isBuffer(out))
  assert.equal(rt.callSync('text', 'upper', 'héllo wörld').toString(), 'HéLLO WöRLD')
  assert.equal(rt.callSync('text', 'reverse', 'abc→d').toString(), 'd→cba')
  assert.equal(rt.callSync('text', 'word_count', ' a bb  c ').readBigUInt64LE(), 3n)
  assert.equal(rt.callSync('checksum', 'hex', Buffer.from([0, 255, 16])).toString(), '00ff10')
  assert.equal((await rt.call('checksum', 'version')).toString(), '1.0.0')
  rt.close()
})

test('every kind of binary input is read, with its offset and length', async () => {
  const rt = fresh()
  const echo = rt.method('probe', 'echo')
  const backing = new ArrayBuffer(16)
  new Uint8Array(backing).set([...Array(16).keys()])
  const cases = [
    [Buffer.from([1, 2, 3]), [1, 2, 3]],
    [new Uint8Array(backing, 4, 3), [4, 5, 6]],
    [new Uint16Array(backing, 2, 2), [2, 3, 4, 5]],
    [new Float64Array(backing, 8, 1), [8, 9, 10, 11, 12, 13, 14, 15]],
    [new DataView(backing, 14, 2), [14, 15]],
    [backing, [...Array(16).keys()]],
    ['é', [0xc3, 0xa9]],
    [undefined, []],
    [Buffer.alloc(0), []],
    [new ArrayBuffer(0), []],
  ]
  for (const [input, bytes] of cases) {
    assert.deepEqual([...echo.callSync(input)], bytes, `sync ${Object.prototype.toString.call(input)}`)
    assert.deepEqual([...(await echo.call(input))], bytes, `async ${Object.prototype.toString.call(input)}`)
  }
  assert.equal(rt.callSync('checksum', 'length').readBigUInt64LE(), 0n)
  assert.equal(rt.callSync('checksum', 'length', new Uint32Array(5)).readBigUInt64LE(), 20n)
  rt.close()
})

test('outputs of every size come back whole', async () => {
  const rt = fresh()
  const echo = rt.method('probe', 'echo')
  const give = rt.method('probe', 'give')
  for (const size of [0, 1, 31, 32, 33, 255, 256, 257, 1024, 1025, 4096, 65536, 1 << 20]) {
    const input = Buffer.alloc(size)
    for (let i = 0; i < size; i++) input[i] = (i * 7 + size) & 0xff
    for (const h of [echo, give]) {
      assert.ok(h.callSync(input).equals(input), `${h.name} sync ${size}`)
      assert.ok((await h.call(input)).equals(input), `${h.name} async ${size}`)
    }
    assert.ok(rt.callSync('probe', 'echo', input).equals(input), `by name ${size}`)
  }
  const repeat = rt.callSync('text', 'repeat', Buffer.concat([Buffer.from([3]), Buffer.from('ab')]))
  assert.equal(repeat.toString(), 'ababab')
  rt.close()
})

test('small outputs do not alias each other', () => {
  const rt = fresh()
  const crc = rt.method('checksum', 'crc32')
  const a = crc.callSync('a')
  const b = crc.callSync('b')
  assert.notDeepEqual(a, b)
  assert.deepEqual(a, crc.callSync('a'))
  a[0] ^= 0xff
  assert.notDeepEqual(a, crc.callSync('a'), 'a returned Buffer is the caller\'s own')
  rt.close()
})

test('callSyncInto writes into the caller\'s buffer', () => {
  const rt = fresh()
  const echo = rt.method('probe', 'echo')
  const target = Buffer.alloc(8, 0xee)
  assert.equal(echo.callSyncInto(Buffer.from('abc'), target), 3)
  assert.equal(target.toString('latin1', 0, 3), 'abc')
  assert.equal(target[3], 0xee)
  const u32 = new Uint32Array(2)
  assert.equal(rt.method('checksum', 'crc32').callSyncInto('hello', u32), 4)
  assert.deepEqual(Buffer.from(u32.buffer, 0, 4), CRC_HELLO)
  // Plugin memory is copied into the target too.
  assert.equal(rt.method('probe', 'give').callSyncInto('xyz', target), 3)
  assert.equal(target.toString('latin1', 0, 3), 'xyz')
  // Input and target may be the same memory.
  const same = Buffer.from('hello')
  assert.equal(echo.callSyncInto(same, same), 5)
  assert.equal(same.toString(), 'hello')
  throwsCode(() => echo.callSyncInto(Buffer.alloc(9), target), Status.OutputTooLarge, /at most 8 bytes/)
  throwsCode(() => echo.callSyncInto('x', 'not a buffer'), Status.InvalidArgument, /target/)
  rt.close()
})

test('call errors carry their status code, sync and async', async () => {
  const rt = fresh()
  throwsCode(() => rt.callSync('probe', 'fail'), Status.PluginError, /probe: failure requested/)
  await rejectsCode(rt.call('probe', 'fail'), Status.PluginError, /probe: failure requested/)
  throwsCode(() => rt.callSync('probe', 'bad_input'), Status.PluginError, /input rejected/)
  throwsCode(() => rt.callSync('lifecycle', 'panic'), Status.PluginPanicked, /panicked on purpose/)
  await rejectsCode(rt.method('lifecycle', 'panic').call(), Status.PluginPanicked)
  throwsCode(() => rt.callSync('probe', 'nope'), Status.MethodNotFound, /nope/)
  await rejectsCode(rt.call('probe', 'nope'), Status.MethodNotFound)
  throwsCode(() => rt.callSync('nope', 'x'), Status.ModuleNotFound, /'nope'/)
  await rejectsCode(rt.call('nope', 'x'), Status.ModuleNotFound)
  throwsCode(() => rt.module('probe').callSync('nope'), Status.MethodNotFound)
  throwsCode(() => rt.callSync('text', 'reverse', Buffer.from([0xff])), Status.PluginError, /UTF-8/)
  // The runtime keeps working after plugin errors and panics.
  assert.deepEqual(rt.callSync('checksum', 'crc32', 'hello'), CRC_HELLO)
  rt.close()
})

test('bad call arguments throw (or reject with) clear TypeErrors', async () => {
  const rt = fresh()
  const crc = rt.method('checksum', 'crc32')
  for (const bad of [42, null, true, {}, [1, 2], Symbol('s'), 10n, () => 1]) {
    const e = throwsCode(() => crc.callSync(bad), Status.InvalidArgument, /Method\.callSync: expected the input as a Buffer, TypedArray, DataView, ArrayBuffer or string, found/)
    assert.ok(e instanceof TypeError)
    throwsCode(() => crc.call(bad), Status.InvalidArgument, /Method\.call: expected the input/)
  }
  throwsCode(() => rt.callSync(1, 'x'), Status.InvalidArgument, /Runtime\.callSync: expected the module name as a string, found a number/)
  throwsCode(() => rt.callSync('checksum', undefined), Status.InvalidArgument, /method name as a string, found undefined/)
  throwsCode(() => rt.call('checksum', {}), Status.InvalidArgument, /method name/)
  throwsCode(() => rt.module('checksum').callSync(null), Status.InvalidArgument, /found null/)
  throwsCode(() => rt.callSync('checksum', 'crc32', new SharedArrayBuffer(4)), Status.InvalidArgument, /found an object/)
  const long = 'm'.repeat(300)
  throwsCode(() => rt.callSync('checksum', long), Status.MethodNotFound, new RegExp(long))
  rt.close()
})

test('stats count calls and errors; Prometheus text is exposed', async () => {
  const rt = fresh()
  const crc = rt.method('checksum', 'crc32')
  for (let i = 0; i < 10; i++) crc.callSync('x')
  await crc.call('x')
  assert.throws(() => rt.callSync('probe', 'fail'))
  const s = rt.stats()
  const crcStats = s.find((x) => x.module === 'checksum' && x.method === 'crc32')
  assert.equal(crcStats.calls, 11)
  assert.equal(crcStats.errors, 0)
  assert.equal(crcStats.handles, 1)
  assert.equal(crcStats.present, true)
  assert.equal(crcStats.version, '1.0.0')
  assert.ok(crcStats.latencySamples >= 1)
  assert.ok(crcStats.meanNs > 0)
  assert.ok(crcStats.p99Ns >= crcStats.p50Ns)
  const fail = s.find((x) => x.module === 'probe' && x.method === 'fail')
  assert.equal(fail.calls, 1)
  assert.equal(fail.errors, 1)
  const text = rt.statsPrometheus()
  assert.match(text, /^# HELP/m)
  assert.match(text, /module="checksum"[^\n]*method="crc32"[^\n]* 11$/m)
  rt.close()
})
