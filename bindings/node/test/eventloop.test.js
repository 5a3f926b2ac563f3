// Asynchronous calls run on the libuv pool: the event loop keeps going.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { hotmod, plugin, u32le } = require('./helpers')

test('the event loop keeps running during an async call to a slow plugin', async () => {
  const rt = new hotmod.Runtime()
  rt.load(plugin('libprobe.so'))
  const sleep = rt.method('probe', 'sleep_ms')
  let ticks = 0
  const timer = setInterval(() => ticks++, 10)
  try {
    const t0 = Date.now()
    const out = await sleep.call(u32le(300))
    const elapsed = Date.now() - t0
    assert.equal(out.length, 0)
    assert.ok(elapsed >= 290, `the plugin slept (${elapsed} ms)`)
    assert.ok(ticks >= 5, `a 10 ms timer fired ${ticks} times during the 300 ms call`)

    // The same call made synchronously blocks the loop: no tick at all.
    ticks = 0
    sleep.callSync(u32le(100))
    assert.equal(ticks, 0)
  } finally {
    clearInterval(timer)
    rt.close()
  }
})

test('async calls run in parallel on the pool', async () => {
  const rt = new hotmod.Runtime()
  rt.load(plugin('libprobe.so'))
  const t0 = Date.now()
  await Promise.all([1, 2, 3, 4].map(() => rt.call('probe', 'sleep_ms', u32le(200))))
  const elapsed = Date.now() - t0
  assert.ok(elapsed < 700, `4 x 200 ms calls took ${elapsed} ms`)
  rt.close()
})
