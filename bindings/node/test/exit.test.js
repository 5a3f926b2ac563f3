// process.exit() does not wait for a plugin: with async calls blocked in a
// plugin (a 10-minute sleep), the process exits at once with the code it
// asked for. Each case runs in a child process; the bound (60 s) only turns
// a hang into a failure instead of stalling the suite.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { plugin } = require('./helpers')

const BOUND_MS = 60000

function run(body, extraEnv = {}) {
  const script = `
    const hotmod = require(${JSON.stringify(path.join(__dirname, '..'))})
    const probe = ${JSON.stringify(plugin('libprobe.so'))}
    const tenMinutes = Buffer.alloc(4); tenMinutes.writeUInt32LE(600000)
    ;(async () => { ${body} })().catch((e) => { console.error(e); process.exit(3) })
  `
  return spawnSync(process.execPath, ['-e', script], {
    encoding: 'utf8',
    timeout: BOUND_MS,
    killSignal: 'SIGKILL',
    env: { ...process.env, ...extraEnv },
  })
}

function expectExit(r, code) {
  assert.equal(r.signal, null, `the child did not exit within ${BOUND_MS} ms (killed: ${r.signal}); stderr: ${r.stderr}`)
  assert.equal(r.status, code, r.stderr)
  assert.equal(r.stdout.trim(), 'exiting')
}

test('process.exit() while an async call is blocked in a plugin', () => {
  const r = run(`
    const rt = new hotmod.Runtime()
    rt.load(probe)
    rt.method('probe', 'sleep_ms').call(tenMinutes)
    // Let the call reach the plugin.
    await new Promise((resolve) => setTimeout(resolve, 200))
    console.log('exiting')
    process.exit(7)
  `)
  expectExit(r, 7)
})

test('process.exit() with every async thread blocked, and more calls queued', () => {
  const r = run(
    `
    const rt = new hotmod.Runtime()
    rt.load(probe)
    for (let i = 0; i < 8; i++) rt.call('probe', 'sleep_ms', tenMinutes)
    await new Promise((resolve) => setTimeout(resolve, 200))
    console.log('exiting')
    process.exit(0)
  `,
    { UV_THREADPOOL_SIZE: '2' }
  )
  expectExit(r, 0)
})

test('process.exit() with a blocked async call and a module whose destroy hook calls a host function', () => {
  const r = run(`
    const rt = new hotmod.Runtime()
    rt.load(probe)
    rt.call('probe', 'sleep_ms', tenMinutes)
    rt.load(${JSON.stringify(plugin('liblifecycle.so'))})
    rt.registerHostFunction('destroyed', () => {})
    await new Promise((resolve) => setTimeout(resolve, 200))
    console.log('exiting')
    process.exit(5)
  `)
  expectExit(r, 5)
})

test('terminating a worker thread while its async call is blocked in a plugin', () => {
  const r = run(`
    const { Worker } = require('node:worker_threads')
    const w = new Worker(\`
      const { parentPort } = require('node:worker_threads')
      const hotmod = require(${JSON.stringify(path.join(__dirname, '..'))})
      const rt = new hotmod.Runtime()
      rt.load(${JSON.stringify(plugin('libprobe.so'))})
      const b = Buffer.alloc(4); b.writeUInt32LE(1000)
      rt.call('probe', 'sleep_ms', b)
      setTimeout(() => parentPort.postMessage('started'), 100)
    \`, { eval: true })
    await new Promise((resolve) => w.once('message', resolve))
    await w.terminate()
    // The call ends after its worker's environment is gone: its result is
    // dropped, nothing crashes.
    await new Promise((resolve) => setTimeout(resolve, 1500))
    console.log('exiting')
    process.exit(0)
  `)
  expectExit(r, 0)
})
