// Watched plugin directories: drop a build in and it runs.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { hotmod, plugin, throwsCode, eventually } = require('./helpers')

const { Runtime, Status } = hotmod

/** Publishes `bytes` as dir/name the safe way: write elsewhere, rename. */
function publish(dir, name, bytes) {
  const tmp = path.join(dir, `.${name}.partial`)
  fs.writeFileSync(tmp, bytes)
  fs.renameSync(tmp, path.join(dir, name))
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

test('a watched directory loads, upgrades and reports, until stopped', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hotmod-node-watch-'))
  const rt = new Runtime()
  const events = []
  rt.setEventHandler((e) => events.push(e))
  try {
    publish(dir, 'libchecksum.so', fs.readFileSync(plugin('libchecksum.so')))
    const w = rt.watch(dir, { debounceMs: 50 })
    assert.equal(w.dir, fs.realpathSync(dir))
    assert.equal(w.running, true)
    assert.equal(rt.module('checksum').version, '1.0.0', 'files already there are loaded before watch() returns')
    const crc = rt.method('checksum', 'crc32')

    publish(dir, 'libtext.so', fs.readFileSync(plugin('libtext.so')))
    assert.ok(await eventually(() => rt.modules().some((m) => m.name === 'text')), 'a new file is loaded')

    publish(dir, 'libchecksum.so', fs.readFileSync(plugin('libchecksum-v2.so')))
    assert.ok(await eventually(() => rt.module('checksum').version === '2.0.0'), 'a replaced file upgrades its module')
    assert.equal(crc.callSync('hello').toString('hex'), '86a61036')

    publish(dir, 'libjunk.so', 'not a library')
    assert.ok(await eventually(() => events.some((e) => e.kind === 'upgradeFailed' && e.code === Status.NotALibrary)))
    assert.match(events.find((e) => e.kind === 'upgradeFailed').path, /libjunk\.so/)

    w.stop()
    w.stop()
    assert.equal(w.running, false)
    publish(dir, 'libprobe.so', fs.readFileSync(plugin('libprobe.so')))
    await sleep(300)
    assert.deepEqual(rt.modules().map((m) => m.name), ['checksum', 'text'], 'a stopped watch changes nothing')

    throwsCode(() => rt.watch(path.join(dir, 'nope')), Status.FileMissing)
    throwsCode(() => rt.watch(path.join(dir, 'libprobe.so')), Status.InvalidArgument, /expected a directory/)
    throwsCode(() => rt.watch(dir, { debounce: 5 }), Status.InvalidArgument, /unknown option 'debounce'/)
  } finally {
    rt.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('a watch thread calling a host function while JavaScript loads and unloads does not deadlock', async () => {
  // The watch thread upgrades `lifecycle` holding the runtime's admin lock;
  // the old version's destroy hook calls the host function `destroyed`,
  // which needs the JavaScript thread — while that thread keeps loading and
  // unloading, which needs the admin lock.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hotmod-node-watch-'))
  const rt = new Runtime({ drainTimeoutMs: 20 })
  const destroyed = []
  rt.registerHostFunction('destroyed', (id) => destroyed.push(id.readBigUInt64LE()))
  const lib = fs.readFileSync(plugin('liblifecycle.so'))
  try {
    publish(dir, 'liblifecycle.so', lib)
    const w = rt.watch(dir, { debounceMs: 20 })
    const generation = rt.method('lifecycle', 'generation')
    const upgrades = 5
    for (let i = 1; i <= upgrades; i++) {
      // Different bytes (trailing data after the ELF image), same plugin.
      publish(dir, 'liblifecycle.so', Buffer.concat([lib, Buffer.from(`build ${i}`)]))
      const until = Date.now() + 5000
      while (generation.callSync().readBigUInt64LE() < BigInt(i + 1) && Date.now() < until) {
        rt.load(plugin('libprobe.so'))
        rt.unload('probe')
        await sleep(2)
      }
      assert.equal(generation.callSync().readBigUInt64LE(), BigInt(i + 1), `upgrade ${i} applied`)
    }
    assert.ok(await eventually(() => destroyed.length === upgrades), `${destroyed.length} of ${upgrades} versions reported destroyed`)
    w.stop()
  } finally {
    rt.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
