// Lifecycle events delivered to a JavaScript callback.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { hotmod, plugin, eventually } = require('./helpers')

const { Runtime, Status } = hotmod

test('load, log, upgrade failure and unload events arrive in order, later', async () => {
  const rt = new Runtime()
  const events = []
  rt.setEventHandler((ev) => {
    // The handler may use the runtime: events never arrive mid-operation.
    rt.modules()
    events.push(ev)
  })
  rt.load(plugin('libtext.so'), { config: 'cfg' })
  assert.deepEqual(events, [], 'delivered on a later turn of the event loop')
  assert.ok(await eventually(() => events.some((e) => e.kind === 'activated')))
  const load = events.splice(0)
  assert.deepEqual(load.map((e) => e.kind), ['loaded', 'validated', 'log', 'activated'])
  for (const e of load) {
    assert.equal(e.module, 'text')
    assert.equal(e.version, '1.0.0')
  }
  assert.equal(load[0].path, plugin('libtext.so'))
  assert.equal(load[2].message, 'text: config cfg')
  assert.equal(typeof load[2].code, 'number')

  assert.throws(() => rt.upgrade('text', plugin('libprobe.so')), (e) => e.code === Status.InvalidArgument)
  assert.ok(await eventually(() => events.some((e) => e.kind === 'upgradeFailed')))
  const failed = events.find((e) => e.kind === 'upgradeFailed')
  assert.equal(failed.code, Status.InvalidArgument)
  assert.match(failed.message, /expected a plugin named 'text', found 'probe'/)
  events.length = 0

  rt.unload('text')
  assert.ok(await eventually(() => events.some((e) => e.kind === 'unloaded')))
  assert.deepEqual(events.map((e) => e.kind), ['draining', 'unloaded'])

  rt.setEventHandler(null)
  events.length = 0
  rt.load(plugin('libtext.so'))
  await new Promise((resolve) => setTimeout(resolve, 50))
  assert.deepEqual(events, [])
  rt.close()
})

test('an exception thrown by the event handler is an uncaught exception', () => {
  const script = `
    const hotmod = require(${JSON.stringify(path.join(__dirname, '..'))})
    process.on('uncaughtException', (e) => { console.log('uncaught: ' + e.message); process.exit(0) })
    const rt = new hotmod.Runtime()
    rt.setEventHandler(() => { throw new Error('handler failed') })
    rt.load(${JSON.stringify(plugin('libprobe.so'))})
    setTimeout(() => { console.log('not reported'); process.exit(1) }, 2000)
  `
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' })
  assert.equal(r.stdout.trim(), 'uncaught: handler failed', r.stderr)
  assert.equal(r.status, 0)
})
