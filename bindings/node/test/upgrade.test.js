// Hot upgrades: under load with no failed call, refused when they break
// callers (unless forced), refused by dependents, and state carried over.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { hotmod, plugin, throwsCode } = require('./helpers')

const { Runtime, Status } = hotmod

test('upgrade checksum v1 -> v2 -> v1 while sync and async calls are in flight: no call fails', async () => {
  const rt = new Runtime()
  rt.load(plugin('libchecksum.so'))
  const crc = rt.method('checksum', 'crc32')
  const version = rt.method('checksum', 'version')
  const input = Buffer.from('hello')
  const expected = crc.callSync(input)
  let ok = 0
  const failures = []
  const versions = new Set()
  let running = true

  // Async callers keep the libuv pool busy with calls in flight.
  const workers = Array.from({ length: 4 }, async () => {
    while (running) {
      try {
        const [out, v] = await Promise.all([crc.call(input), version.call()])
        assert.deepEqual(out, expected)
        versions.add(v.toString())
        ok++
      } catch (e) {
        failures.push(e)
      }
    }
  })
  // Sync callers on the event loop between upgrades.
  const syncCalls = async () => {
    while (running) {
      try {
        assert.deepEqual(crc.callSync(input), expected)
        assert.deepEqual(rt.callSync('checksum', 'crc32', input), expected)
        ok++
      } catch (e) {
        failures.push(e)
      }
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  const syncer = syncCalls()

  const files = [plugin('libchecksum-v2.so'), plugin('libchecksum.so')]
  for (let i = 0; i < 10; i++) {
    await new Promise((resolve) => setTimeout(resolve, 15))
    const m = rt.upgrade('checksum', files[i % 2])
    assert.equal(m.version, i % 2 === 0 ? '2.0.0' : '1.0.0')
  }
  await new Promise((resolve) => setTimeout(resolve, 15))
  running = false
  await Promise.all([...workers, syncer])

  assert.deepEqual(failures, [])
  assert.ok(ok > 50, `${ok} calls succeeded`)
  assert.deepEqual([...versions].sort(), ['1.0.0', '2.0.0'], 'calls reached both versions')
  assert.equal(rt.callSync('checksum', 'version').toString(), '1.0.0')
  const stats = rt.stats().find((s) => s.method === 'crc32')
  assert.equal(stats.errors, 0)
  rt.close()
})

test('an upgrade that breaks held handles is refused unless forced', () => {
  const rt = new Runtime()
  rt.load(plugin('libchecksum.so'))
  const crc = rt.method('checksum', 'crc32')
  const adler = rt.method('checksum', 'adler32')
  throwsCode(() => rt.upgrade('checksum', plugin('libchecksum-breaking.so')), Status.SignatureMismatch, /crc32|adler32/)
  assert.equal(rt.module('checksum').version, '1.0.0', 'the old version keeps serving')
  assert.equal(crc.callSync('hello').length, 4)

  const m = rt.upgrade('checksum', plugin('libchecksum-breaking.so'), { force: true })
  assert.equal(m.version, '3.0.0')
  throwsCode(() => crc.callSync('hello'), Status.SignatureChanged, /resolve it again/)
  throwsCode(() => adler.callSync('hello'), Status.StaleHandle, /removed by a forced upgrade/)
  assert.equal(rt.method('checksum', 'crc32').callSync('hello').length, 8, 'a fresh handle reaches the new signature')
  const gone = rt.stats().find((s) => s.method === 'adler32')
  assert.equal(gone.present, false)
  rt.close()
})

test('dependents constrain upgrades; calls through them follow upgrades', () => {
  const rt = new Runtime()
  rt.loadAll([plugin('libchecksum.so'), plugin('libdependent.so')])
  throwsCode(() => rt.upgrade('checksum', plugin('libchecksum-v2.so')), Status.VersionConflict, /dependent/)
  const viaDep = rt.method('dependent', 'checksum_version')
  assert.equal(viaDep.callSync().toString(), '1.0.0')
  rt.upgrade('checksum', plugin('libchecksum-v1.1.so'))
  assert.equal(viaDep.callSync().toString(), '1.1.0')
  rt.close()
})

test('a failed upgrade leaves the old version serving', () => {
  const rt = new Runtime()
  rt.load(plugin('liblifecycle.so'))
  const gen = rt.method('lifecycle', 'generation')
  assert.equal(gen.callSync().readBigUInt64LE(), 1n)
  throwsCode(() => rt.upgrade('lifecycle', plugin('liblifecycle.so'), { config: 'fail-init' }), Status.InitFailed)
  throwsCode(() => rt.upgrade('lifecycle', plugin('libprobe.so')), Status.InvalidArgument, /expected a plugin named 'lifecycle', found 'probe'/)
  throwsCode(() => rt.upgrade('nope', plugin('libprobe.so')), Status.ModuleNotFound)
  throwsCode(() => rt.upgrade('lifecycle', '/nonexistent/lib.so'), Status.FileMissing)
  assert.equal(gen.callSync().readBigUInt64LE(), 1n)
  rt.upgrade('lifecycle', plugin('liblifecycle.so'))
  assert.equal(gen.callSync().readBigUInt64LE(), 2n, 'state carried into the new version')
  assert.equal(rt.state('lifecycle'), 'active')
  rt.close()
})
