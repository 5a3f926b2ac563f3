// Host functions: JavaScript functions that plugins call, from the
// JavaScript thread (sync calls) and from worker threads (async calls).
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { hotmod, plugin } = require('./helpers')

const { Runtime, Status } = hotmod

function textRuntime() {
  const rt = new Runtime()
  rt.load(plugin('libtext.so'))
  return rt
}

test('a plugin calls a JavaScript host function, sync and async', async () => {
  const rt = textRuntime()
  const greet = rt.method('text', 'greet')
  assert.equal(greet.callSync('Ann').toString(), 'Hello, Ann!', 'fallback without a host function')
  const seen = []
  rt.registerHostFunction('greeting', (input) => {
    assert.ok(Buffer.isBuffer(input))
    seen.push(input.toString())
    return 'Hi'
  })
  assert.equal(greet.callSync('Ann').toString(), 'Hi, Ann!')
  assert.equal((await greet.call('Bob')).toString(), 'Hi, Bob!')
  assert.equal((await rt.call('text', 'greet', 'Cy')).toString(), 'Hi, Cy!')
  assert.deepEqual(seen, ['Ann', 'Bob', 'Cy'])
  rt.close()
})

test('host functions may return any binary value, a string or nothing', async () => {
  const rt = textRuntime()
  const results = [
    [() => Buffer.from('Buf'), 'Buf'],
    [() => new Uint8Array([0x55, 0x38]), 'U8'],
    [() => new Uint16Array([0x4948]), 'HI'],
    [() => new TextEncoder().encode('Enc').buffer, 'Enc'],
    [() => 'Str', 'Str'],
    [() => undefined, ''],
    [() => null, ''],
    [() => 'x'.repeat(100000), 'x'.repeat(100000)],
  ]
  for (const [fn, greeting] of results) {
    rt.registerHostFunction('greeting', fn)
    assert.equal(rt.callSync('text', 'greet', 'Z').toString(), `${greeting}, Z!`)
    assert.equal((await rt.call('text', 'greet', 'Z')).toString(), `${greeting}, Z!`)
  }
  rt.close()
})

test('what a host function throws or returns wrongly becomes the plugin\'s error', async () => {
  // text.greet falls back to "Hello" when the host function fails: the
  // failure reached the plugin as an error, and nothing reached JavaScript.
  const rt = textRuntime()
  const bad = [
    () => {
      throw new Error('boom')
    },
    () => {
      throw 'a string' // eslint-disable-line no-throw-literal
    },
    () => 42,
    () => ({ not: 'bytes' }),
    async () => 'too late',
  ]
  for (const fn of bad) {
    rt.registerHostFunction('greeting', fn)
    assert.equal(rt.callSync('text', 'greet', 'Q').toString(), 'Hello, Q!')
    assert.equal((await rt.call('text', 'greet', 'Q')).toString(), 'Hello, Q!')
  }
  rt.close()
})

test('unregistering a host function', () => {
  const rt = textRuntime()
  rt.registerHostFunction('greeting', () => 'Hey')
  assert.equal(rt.callSync('text', 'greet', 'A').toString(), 'Hey, A!')
  assert.equal(rt.unregisterHostFunction('greeting'), true)
  assert.equal(rt.unregisterHostFunction('greeting'), false)
  assert.equal(rt.callSync('text', 'greet', 'A').toString(), 'Hello, A!')
  assert.throws(() => rt.registerHostFunction('', () => 1), (e) => e.code === Status.InvalidArgument)
  rt.close()
})

test('host functions may call methods, but not change what is loaded or registered', async () => {
  const rt = textRuntime()
  rt.load(plugin('libchecksum.so'))
  const errors = []
  rt.registerHostFunction('greeting', (input) => {
    for (const op of [
      () => rt.load(plugin('libprobe.so')),
      () => rt.unload('checksum'),
      () => rt.upgrade('checksum', plugin('libchecksum-v2.so')),
      () => rt.close(),
      () => rt.registerHostFunction('other', () => 'x'),
      () => rt.unregisterHostFunction('greeting'),
      () => rt.applyManifest('/nonexistent.toml'),
      () => rt.loadAll([]),
    ]) {
      try {
        op()
        errors.push('no error')
      } catch (e) {
        errors.push(e.code)
      }
    }
    return rt.callSync('checksum', 'hex', input)
  })
  assert.equal(rt.callSync('text', 'greet', 'AB').toString(), '4142, AB!')
  assert.equal((await rt.call('text', 'greet', 'AB')).toString(), '4142, AB!')
  assert.deepEqual(errors, Array(16).fill(Status.Busy))
  assert.deepEqual(rt.modules().map((m) => m.name), ['checksum', 'text'])
  rt.close()
})

test('many concurrent async calls hop to the JavaScript thread and back', async () => {
  const rt = textRuntime()
  let calls = 0
  rt.registerHostFunction('greeting', (input) => {
    calls++
    return `Hi#${input.toString().length}`
  })
  const names = Array.from({ length: 200 }, (_, i) => 'n'.repeat(i % 17))
  const outs = await Promise.all(names.map((n) => rt.call('text', 'greet', n)))
  outs.forEach((out, i) => assert.equal(out.toString(), `Hi#${names[i].length}, ${names[i]}!`))
  assert.equal(calls, 200)
  rt.close()
})

test('a plugin\'s destroy hook reaches its host function exactly once', async () => {
  const rt = new Runtime()
  const destroyed = []
  const violations = []
  rt.registerHostFunction('destroyed', (id) => destroyed.push(id.readBigUInt64LE()))
  rt.registerHostFunction('violation', (id) => violations.push(id.readBigUInt64LE()))
  rt.load(plugin('liblifecycle.so'))
  const id = rt.callSync('lifecycle', 'work', 'x').readBigUInt64LE()
  assert.equal((await rt.call('lifecycle', 'work', 'y')).readBigUInt64LE(), id)
  rt.unload('lifecycle')
  assert.deepEqual(destroyed, [id])
  assert.deepEqual(violations, [])
  rt.close()
})
