// An asynchronous call copies its input when it starts (views over a
// SharedArrayBuffer excepted: they cannot be detached, and are read in
// place), so the caller may modify, transfer or detach the input as soon as
// call() returns: the plugin still reads what was passed, and nothing reads
// memory whose owner changed or that was freed.
//
// Each scenario runs in a child process (a read of freed memory would be a
// segfault): the async calls are queued behind calls that hold the thread
// pool, so they run after the input was transferred and its new owner
// collected (with --expose-gc) and the memory unmapped.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { hotmod, plugin, u32le } = require('./helpers')

function run(body) {
  const script = `
    const hotmod = require(${JSON.stringify(path.join(__dirname, '..'))})
    const probe = ${JSON.stringify(plugin('libprobe.so'))}
    const { Worker, MessageChannel } = require('node:worker_threads')
    const rt = new hotmod.Runtime()
    rt.load(probe)
    const give = rt.method('probe', 'give')
    const sleep = (ms) => { const b = Buffer.alloc(4); b.writeUInt32LE(ms); return rt.call('probe', 'sleep_ms', b) }
    // Occupies every thread that runs async calls, so what is queued next
    // runs once the scenario has done its damage.
    const hold = () => Array.from({ length: 64 }, () => sleep(300))
    const collect = async () => {
      for (let i = 0; i < 4; i++) { global.gc(); await new Promise((r) => setImmediate(r)) }
      // Reuse the freed memory, if it is still mapped.
      global.junk = Array.from({ length: 8 }, () => Buffer.alloc(1 << 20, 0xee))
    }
    const check = (out, fill, len, what) => {
      if (out.length !== len) throw new Error(what + ': ' + out.length + ' bytes, expected ' + len)
      for (let i = 0; i < out.length; i++) if (out[i] !== fill) throw new Error(what + ': byte ' + i + ' is ' + out[i] + ', expected ' + fill)
    }
    ;(async () => { ${body}; console.log('ok') })().catch((e) => { console.error(e); process.exit(3) })
  `
  return spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 120000 })
}

function expectOk(r) {
  assert.equal(r.signal, null, `the child died of ${r.signal}: ${r.stderr}`)
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout.trim(), 'ok')
}

test('an ArrayBuffer transferred by structuredClone during an async call', () => {
  expectOk(
    run(`
      const held = hold()
      const ab = new ArrayBuffer(1 << 20)
      new Uint8Array(ab).fill(7)
      const pending = [give.call(ab), give.call(new Uint8Array(ab, 16, 1000)), rt.call('probe', 'give', new DataView(ab))]
      ;(() => { structuredClone(ab, { transfer: [ab] }) })()
      if (ab.byteLength !== 0) throw new Error('not detached')
      await collect()
      const [a, b, c] = await Promise.all(pending)
      check(a, 7, 1 << 20, 'ArrayBuffer'); check(b, 7, 1000, 'Uint8Array'); check(c, 7, 1 << 20, 'DataView')
      await Promise.all(held)
    `)
  )
})

test('a Buffer whose memory is transferred to a worker thread during an async call', () => {
  expectOk(
    run(`
      const held = hold()
      const ab = new ArrayBuffer(1 << 20)
      const buf = Buffer.from(ab)
      buf.fill(9)
      const pending = give.call(buf)
      const w = new Worker('require("node:worker_threads").parentPort.once("message", () => process.exit(0))', { eval: true })
      w.postMessage(ab, [ab])
      if (buf.length !== 0) throw new Error('not detached')
      await new Promise((r) => w.once('exit', r))
      await collect()
      check(await pending, 9, 1 << 20, 'Buffer')
      await Promise.all(held)
    `)
  )
})

test('a MessagePort transfer whose message is dropped, and changes made after call()', () => {
  expectOk(
    run(`
      const held = hold()
      const ab = new ArrayBuffer(1 << 20)
      new Uint8Array(ab).fill(5)
      const kept = new Uint8Array(1 << 20).fill(6)
      const pending = [give.call(ab), give.call(kept)]
      const { port1, port2 } = new MessageChannel()
      port1.postMessage(ab, [ab])
      port1.close(); port2.close()
      kept.fill(1)
      await collect()
      const [a, b] = await Promise.all(pending)
      check(a, 5, 1 << 20, 'transferred'); check(b, 6, 1 << 20, 'modified after call()')
      await Promise.all(held)
    `)
  )
})

test('ArrayBuffer.prototype.transfer during an async call, where the runtime has it', (t) => {
  if (typeof ArrayBuffer.prototype.transfer !== 'function') {
    t.skip(`node ${process.version} has no ArrayBuffer.prototype.transfer`)
    return
  }
  expectOk(
    run(`
      const held = hold()
      let ab = new ArrayBuffer(1 << 20)
      new Uint8Array(ab).fill(3)
      const pending = give.call(ab)
      ;(() => { ab.transfer() })()
      await collect()
      check(await pending, 3, 1 << 20, 'transfer()')
      await Promise.all(held)
    `)
  )
})

test('async input is a copy, except views over a SharedArrayBuffer, read in place', async () => {
  const rt = new hotmod.Runtime()
  rt.load(plugin('libprobe.so'))
  const addr = rt.method('probe', 'addr')
  const sab = new SharedArrayBuffer(1 << 16)
  for (const view of [new Uint8Array(sab, 64, 100), new DataView(sab, 8, 16), new Int32Array(sab), Buffer.from(sab, 32, 64)]) {
    const at = hotmod.bufferAddress(view)
    assert.equal(addr.callSync(view).readBigUInt64LE(), at, `sync ${view.constructor.name}`)
    assert.equal((await addr.call(view)).readBigUInt64LE(), at, `async ${view.constructor.name} over a SharedArrayBuffer`)
  }
  for (const input of [Buffer.alloc(1 << 20), new ArrayBuffer(100), new Uint8Array(64)]) {
    const at = hotmod.bufferAddress(input)
    assert.notEqual((await addr.call(input)).readBigUInt64LE(), at, `async ${input.constructor.name} is copied`)
  }
  // The copy is what was passed.
  const give = rt.method('probe', 'give')
  const input = Buffer.from('copied at call time')
  const pending = give.call(input)
  input.fill(0)
  assert.equal((await pending).toString(), 'copied at call time')
  assert.equal((await give.call(u32le(7))).readUInt32LE(), 7)
  rt.close()
})
