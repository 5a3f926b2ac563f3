// Zero-copy both ways: the plugin reads the caller's memory in place, and
// large outputs are external Buffers over the plugin's memory, released
// through the plugin exactly once when garbage-collected.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { hotmod, plugin, gc, eventually, probeCounts } = require('./helpers')

const { Runtime, bufferAddress, COPY_THRESHOLD } = hotmod

test('sync input is read in place: the plugin sees the caller\'s address', async () => {
  const rt = new Runtime()
  rt.load(plugin('libprobe.so'))
  const addr = rt.method('probe', 'addr')
  const backing = new ArrayBuffer(1 << 16)
  const inputs = [
    Buffer.alloc(16),
    Buffer.alloc(1 << 20),
    Buffer.from('pooled small buffer'),
    new Uint8Array(64),
    new Uint8Array(backing, 100, 50),
    new Uint16Array(backing, 256, 8),
    new DataView(backing, 1000, 10),
    backing,
  ]
  for (const input of inputs) {
    const expected = bufferAddress(input)
    assert.ok(expected > 0n)
    assert.equal(addr.callSync(input).readBigUInt64LE(), expected, `sync ${input.constructor.name}`)
    assert.equal(rt.callSync('probe', 'addr', input).readBigUInt64LE(), expected, `by name ${input.constructor.name}`)
    // Async input is a copy (see asyncinput.test.js).
    assert.notEqual((await addr.call(input)).readBigUInt64LE(), expected, `async ${input.constructor.name}`)
  }
  const view = new Uint8Array(backing, 100, 50)
  assert.equal(bufferAddress(view) - bufferAddress(backing), 100n)
  assert.equal(bufferAddress(Buffer.alloc(0)), 0n)
  assert.throws(() => bufferAddress('text'), (e) => e.code === hotmod.Status.InvalidArgument)
  rt.close()
})

test('large outputs are the plugin\'s memory, released exactly once after GC', async () => {
  const rt = new Runtime()
  rt.load(plugin('libprobe.so'))
  const give = rt.method('probe', 'give')
  const size = COPY_THRESHOLD * 4
  const input = Buffer.alloc(size, 0x5a)
  const before = probeCounts(rt)
  // Made in a function that has returned, so that no suspended frame of
  // this test keeps the last result alive.
  const held = { outs: [] }
  await (async () => {
    for (let i = 0; i < 20; i++) held.outs.push(give.callSync(input))
    for (let i = 0; i < 20; i++) held.outs.push(await give.call(input))
  })()
  assert.ok(held.outs.every((out) => out.equals(input)))
  await gc()
  let now = probeCounts(rt)
  assert.equal(now.gives - before.gives, 40)
  assert.equal(now.releases - before.releases, 0, 'no release while the Buffers are alive: they view plugin memory')
  held.outs = null
  assert.ok(
    await eventually(() => probeCounts(rt).releases - before.releases === 40),
    `all 40 released after GC (released ${probeCounts(rt).releases - before.releases})`
  )
  await gc()
  now = probeCounts(rt)
  assert.equal(now.releases - before.releases, 40, 'and never twice')
  assert.equal(now.gives, now.releases)
  rt.close()
})

test('small outputs are copies: the plugin memory is released at once', async () => {
  const rt = new Runtime()
  rt.load(plugin('libprobe.so'))
  const give = rt.method('probe', 'give')
  const before = probeCounts(rt)
  const input = Buffer.alloc(COPY_THRESHOLD, 1)
  const a = give.callSync(input)
  const b = await give.call(Buffer.from('tiny'))
  const now = probeCounts(rt)
  assert.equal(now.gives - before.gives, 2)
  assert.equal(now.releases - before.releases, 2)
  assert.ok(a.equals(input))
  assert.equal(b.toString(), 'tiny')
  rt.close()
})

test('a module stays mapped while a Buffer over its memory is alive', async () => {
  const rt = new Runtime({ drainTimeoutMs: 10 })
  rt.load(plugin('libprobe.so'))
  const input = Buffer.alloc(COPY_THRESHOLD * 8)
  input.fill('plugin memory outlives unload ')
  let out = rt.callSync('probe', 'give', input)
  rt.unload('probe')
  // The version is drained but alive: its memory (and release code) stay.
  assert.ok(out.equals(input))
  out = null
  await gc()
  rt.load(plugin('libprobe.so'))
  const c = probeCounts(rt)
  assert.equal(c.gives, c.releases)
  rt.close()
})

test('an async call keeps its input alive', async () => {
  const rt = new Runtime()
  rt.load(plugin('libprobe.so'))
  const pending = []
  for (let i = 0; i < 8; i++) {
    pending.push(rt.call('probe', 'give', Buffer.alloc(1 << 20, i)))
  }
  await gc()
  const outs = await Promise.all(pending)
  outs.forEach((out, i) => {
    assert.equal(out.length, 1 << 20)
    assert.ok(out.every((b) => b === i))
  })
  rt.close()
})
