// A runtime that is garbage-collected, or still loaded when the process
// exits, unloads its modules without crashing — even when their destroy
// hooks call host functions.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { plugin } = require('./helpers')

function run(body) {
  const script = `
    const hotmod = require(${JSON.stringify(path.join(__dirname, '..'))})
    const { gc } = require(${JSON.stringify(path.join(__dirname, 'helpers.js'))})
    const lifecycle = ${JSON.stringify(plugin('liblifecycle.so'))}
    const probe = ${JSON.stringify(plugin('libprobe.so'))}
    ;(async () => { ${body} })().catch((e) => { console.error(e); process.exit(3) })
  `
  return spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60000 })
}

test('a collected runtime unloads its modules', () => {
  const r = run(`
    const destroyed = []
    ;(() => {
      const rt = new hotmod.Runtime()
      rt.registerHostFunction('destroyed', () => { destroyed.push(1) })
      rt.load(lifecycle)
      rt.load(probe)
      rt.callSync('lifecycle', 'work', 'x')
      rt.method('probe', 'give').callSync(Buffer.alloc(1 << 16))
    })()
    for (let i = 0; i < 20 && destroyed.length === 0; i++) await gc()
    console.log('destroyed ' + destroyed.length)
  `)
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout.trim(), 'destroyed 1', "its destroy hook reached the host function")
})

test('exiting with modules loaded, calls in flight and a watch running ends cleanly', () => {
  const r = run(`
    const fs = require('node:fs'), os = require('node:os')
    const dir = fs.mkdtempSync(require('node:path').join(os.tmpdir(), 'hotmod-node-exit-'))
    fs.copyFileSync(probe, dir + '/libprobe.so')
    const rt = new hotmod.Runtime()
    rt.registerHostFunction('destroyed', () => 'ok')
    rt.setEventHandler(() => {})
    rt.load(lifecycle)
    rt.watch(dir)
    const buf = Buffer.alloc(4); buf.writeUInt32LE(50)
    rt.call('probe', 'sleep_ms', buf)
    global.keep = rt.callSync('probe', 'give', Buffer.alloc(1 << 16))
    fs.rmSync(dir, { recursive: true, force: true })
    console.log('exiting')
    process.exit(0)
  `)
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.signal, null)
  assert.equal(r.stdout.trim(), 'exiting')
})
