// index.js routes synchronous calls through raw N-API functions; the
// classes' own (napi-rs) methods must behave the same for code that loads
// hotmod.node directly. Run in a child process that never loads index.js.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { plugin } = require('./helpers')

test('the native class methods give the same results as index.js', () => {
  const script = `
    const assert = require('node:assert/strict')
    const native = require(${JSON.stringify(path.join(__dirname, '..', 'hotmod.node'))})
    const rt = new native.Runtime()
    rt.load(${JSON.stringify(plugin('libchecksum.so'))})
    rt.load(${JSON.stringify(plugin('libprobe.so'))})
    const crc = Buffer.from([0x86, 0xa6, 0x10, 0x36])
    assert.deepEqual(rt.method('checksum', 'crc32').callSync('hello'), crc)
    assert.deepEqual(rt.module('checksum').callSync('crc32', 'hello'), crc)
    assert.deepEqual(rt.callSync('checksum', 'crc32', 'hello'), crc)
    const big = Buffer.alloc(100000, 3)
    assert.ok(rt.callSync('probe', 'give', big).equals(big))
    const target = Buffer.alloc(4)
    assert.equal(rt.method('checksum', 'crc32').callSyncInto('hello', target), 4)
    assert.deepEqual(target, crc)
    try { rt.callSync('probe', 'fail'); assert.fail('no error') } catch (e) { assert.equal(e.code, 2003) }
    try { rt.method('probe', 'echo').callSync(5); assert.fail('no error') } catch (e) { assert.equal(e.code, 3002) }
    // The raw entry points refuse anything but their own internal handle.
    const moduleRef = rt.module('checksum').__ref
    for (const bad of [undefined, null, {}, 5, moduleRef]) {
      try { native.__callHandle(bad, 'x'); assert.fail('no error') } catch (e) { assert.equal(e.code, 3002, String(e)) }
    }
    try { native.__callName(moduleRef, 'checksum', 'crc32'); assert.fail('no error') } catch (e) { assert.equal(e.code, 3002) }
    assert.deepEqual(Buffer.from(native.__callHandle(rt.method('checksum', 'crc32').__ref, 'hello')), crc)
    rt.close()
    console.log('ok')
  `
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout.trim(), 'ok')
})
