// Runtimes in worker threads: each JavaScript thread has its own
// environment, scratch buffer and host-function bridge.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { Worker } = require('node:worker_threads')
const { hotmod, plugin } = require('./helpers')

test('a runtime works in worker threads, beside one on the main thread', async () => {
  const main = new hotmod.Runtime()
  main.load(plugin('libtext.so'))
  main.registerHostFunction('greeting', () => 'Main')
  const source = `
    const { parentPort, workerData } = require('node:worker_threads')
    const hotmod = require(workerData.pkg)
    const rt = new hotmod.Runtime()
    rt.load(workerData.text)
    rt.load(workerData.checksum)
    rt.registerHostFunction('greeting', () => 'Worker' + workerData.n)
    ;(async () => {
      const out = []
      for (let i = 0; i < 200; i++) {
        out.push(rt.callSync('text', 'greet', 'x').toString())
        out.push((await rt.call('text', 'greet', 'y')).toString())
      }
      const crc = rt.method('checksum', 'crc32').callSync('hello').toString('hex')
      const big = rt.callSync('text', 'repeat', Buffer.concat([Buffer.from([200]), Buffer.alloc(100, 7)])).length
      rt.close()
      parentPort.postMessage({ greetings: [...new Set(out)].sort(), crc, big })
    })()
  `
  const run = (n) =>
    new Promise((resolve, reject) => {
      const w = new Worker(source, {
        eval: true,
        workerData: { n, pkg: path.join(__dirname, '..'), text: plugin('libtext.so'), checksum: plugin('libchecksum.so') },
      })
      w.once('message', resolve)
      w.once('error', reject)
    })
  const [a, b] = await Promise.all([run(1), run(2)])
  assert.deepEqual(a, { greetings: ['Worker1, x!', 'Worker1, y!'], crc: '86a61036', big: 20000 })
  assert.deepEqual(b, { greetings: ['Worker2, x!', 'Worker2, y!'], crc: '86a61036', big: 20000 })
  assert.equal(main.callSync('text', 'greet', 'z').toString(), 'Main, z!')
  assert.equal((await main.call('text', 'greet', 'z')).toString(), 'Main, z!')
  main.close()
})

test('a worker thread that exits with a runtime still loaded ends cleanly', async () => {
  const source = `
    const { workerData } = require('node:worker_threads')
    const hotmod = require(workerData.pkg)
    const rt = new hotmod.Runtime()
    rt.load(workerData.text)
    rt.registerHostFunction('greeting', () => 'bye')
    rt.setEventHandler(() => {})
    rt.call('text', 'greet', 'pending')
    process.exit(0)
  `
  const code = await new Promise((resolve, reject) => {
    const w = new Worker(source, { eval: true, workerData: { pkg: path.join(__dirname, '..'), text: plugin('libtext.so') } })
    w.once('exit', resolve)
    w.once('error', reject)
  })
  assert.equal(code, 0)
})
