// Loading, introspection, unloading (with cascade), loadAll, and the load
// errors that reach JavaScript.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { hotmod, plugin, throwsCode } = require('./helpers')

const { Runtime, Module, Method, Status } = hotmod

test('load returns a module describing what the plugin declares', () => {
  const rt = new Runtime()
  const file = plugin('libchecksum.so')
  const m = rt.load(file)
  assert.ok(m instanceof Module)
  assert.equal(m.name, 'checksum')
  assert.equal(m.version, '1.0.0')
  assert.match(m.description, /checksum/i)
  assert.equal(m.path, file)
  assert.equal(m.sha256, crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex'))
  assert.equal(m.safeToUnload, true)
  assert.equal(m.loaded, true)
  assert.deepEqual(
    m.methods.map((x) => x.name),
    ['crc32', 'adler32', 'fnv1a64', 'length', 'hex', 'version', 'calls']
  )
  const crc = m.methods[0]
  assert.equal(crc.signature, 'bytes -> u32le')
  assert.match(crc.signatureHash, /^[0-9a-f]{16}$/)
  assert.deepEqual(m.dependencies, [])
  assert.deepEqual(m.info(), JSON.parse(JSON.stringify(m)))
  assert.equal(m.info().abiMinor, 0)
  assert.match(require('node:util').inspect(m), /Module \{[\s\S]*name: 'checksum'/)
  assert.equal(rt.state('checksum'), 'active')
  rt.close()
})

test('module(), modules() and method() resolve what is loaded', () => {
  const rt = new Runtime()
  rt.load(plugin('libtext.so'))
  rt.load(plugin('libchecksum.so'))
  assert.deepEqual(rt.modules().map((m) => m.name), ['checksum', 'text'])
  assert.equal(rt.module('text').version, '1.0.0')
  const h = rt.method('text', 'upper')
  assert.ok(h instanceof Method)
  assert.equal(h.module, 'text')
  assert.equal(h.name, 'upper')
  assert.equal(h.signature, 'bytes -> bytes')
  assert.equal(h.signatureHash, rt.module('text').methods.find((x) => x.name === 'upper').signatureHash)
  assert.deepEqual(rt.module('text').method('reverse').toJSON().name, 'reverse')
  throwsCode(() => rt.module('nope'), Status.ModuleNotFound, /'nope' is not loaded; loaded modules: checksum, text/)
  throwsCode(() => rt.method('nope', 'x'), Status.ModuleNotFound)
  throwsCode(() => rt.method('text', 'nope'), Status.MethodNotFound, /nope/)
  throwsCode(() => rt.module('text').method('nope'), Status.MethodNotFound)
  assert.throws(() => new Module(), /constructor/)
  assert.throws(() => new Method(), /constructor/)
  throwsCode(() => Method.prototype.callSync.call(rt.module('text'), 'x'), Status.InvalidArgument, /called on a Method, found object/)
  rt.close()
})

test('dependencies: declared, enforced, and unloaded with cascade', () => {
  const rt = new Runtime()
  throwsCode(() => rt.load(plugin('libdependent.so')), Status.DependencyUnsatisfied, /checksum/)
  rt.load(plugin('libchecksum.so'))
  const dep = rt.load(plugin('libdependent.so'))
  assert.deepEqual(dep.dependencies, [{ name: 'checksum', requirement: '^1', optional: false }])
  const viaDep = dep.method('crc32_via_dep')
  assert.deepEqual(viaDep.callSync('hello'), rt.callSync('checksum', 'crc32', 'hello'))
  throwsCode(() => rt.unload('checksum'), Status.ModuleInUse, /dependent/)
  rt.unload('checksum', { cascade: true })
  assert.deepEqual(rt.modules(), [])
  assert.equal(dep.loaded, false)
  throwsCode(() => viaDep.callSync('x'), Status.StaleHandle)
  throwsCode(() => rt.load(plugin('liborphan.so')), Status.DependencyUnsatisfied, /nowhere/)
  rt.close()
})

test('loadAll loads in dependency order and refuses cycles', () => {
  const rt = new Runtime()
  const mods = rt.loadAll([plugin('libdependent.so'), { path: plugin('libchecksum.so') }])
  assert.deepEqual(mods.map((m) => m.name), ['checksum', 'dependent'])
  rt.close()
  throwsCode(() => rt.loadAll([plugin('libcycle-a.so'), plugin('libcycle-b.so')]), Status.DependencyCycle, /cycle_a|cycle_b/)
  assert.deepEqual(rt.modules(), [])
  throwsCode(() => rt.loadAll('x'), Status.InvalidArgument, /expected an array/)
  throwsCode(() => rt.loadAll([{ sha256: 'x' }]), Status.InvalidArgument, /no 'path'/)
})

test('unload makes handles stale; the module can be loaded again', () => {
  const rt = new Runtime()
  rt.load(plugin('libchecksum.so'))
  const h = rt.method('checksum', 'crc32')
  rt.unload('checksum')
  throwsCode(() => h.callSync('x'), Status.StaleHandle, /no longer loaded/)
  throwsCode(() => rt.unload('checksum'), Status.ModuleNotFound)
  rt.load(plugin('libchecksum.so'))
  assert.equal(rt.callSync('checksum', 'version').toString(), '1.0.0')
  rt.close()
})

test('load errors carry their status code', () => {
  const rt = new Runtime()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hotmod-node-'))
  try {
    throwsCode(() => rt.load(path.join(dir, 'missing.so')), Status.FileMissing, /missing\.so/)
    const junk = path.join(dir, 'junk.so')
    fs.writeFileSync(junk, 'this is not a shared library')
    throwsCode(() => rt.load(junk), Status.NotALibrary, /junk\.so/)
    rt.load(plugin('libchecksum.so'))
    throwsCode(() => rt.load(plugin('libchecksum.so')), Status.NameConflict, /already loaded/)
    throwsCode(
      () => rt.load(plugin('liblifecycle.so'), { config: 'fail-init' }),
      Status.InitFailed,
      /init refused by config/
    )
    throwsCode(() => rt.load(plugin('libprobe.so'), { sha256: '0'.repeat(64) }), Status.HashMismatch)
    throwsCode(() => rt.load(plugin('libprobe.so'), { sha256: 'xyz' }), Status.InvalidArgument, /64 hexadecimal/)
    const sha = crypto.createHash('sha256').update(fs.readFileSync(plugin('libprobe.so'))).digest('hex')
    assert.equal(rt.load(plugin('libprobe.so'), { sha256: sha }).sha256, sha)

    const open = path.join(dir, 'open.so')
    fs.copyFileSync(plugin('libtext.so'), open)
    fs.chmodSync(open, 0o666)
    throwsCode(() => rt.load(open), Status.UnsafeFile, /open\.so/)
    assert.equal(rt.load(open, { allowWorldWritable: true }).name, 'text')
  } finally {
    rt.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('bad arguments throw TypeErrors that say what was expected', () => {
  const rt = new Runtime()
  throwsCode(() => rt.load(42), Status.InvalidArgument, /Runtime\.load: expected the plugin path as a string, found a number/)
  throwsCode(() => rt.load(), Status.InvalidArgument, /found undefined/)
  throwsCode(() => rt.load(plugin('libprobe.so'), { shaa256: 'x' }), Status.InvalidArgument, /unknown option 'shaa256'/)
  throwsCode(() => rt.load(plugin('libprobe.so'), 'opts'), Status.InvalidArgument, /options as an object, found a string/)
  throwsCode(() => rt.load(plugin('libprobe.so'), { allowWorldWritable: 'yes' }), Status.InvalidArgument, /'allowWorldWritable' to be a boolean/)
  throwsCode(() => rt.load(plugin('libprobe.so'), { config: 5 }), Status.InvalidArgument, /'config'/)
  throwsCode(() => rt.unload('x', { cascde: true }), Status.InvalidArgument, /unknown option 'cascde'; expected one of: cascade/)
  throwsCode(() => new Runtime({ drainTimeoutMs: -1 }), Status.InvalidArgument, /drainTimeoutMs/)
  throwsCode(() => rt.registerHostFunction('x', 'not a function'), Status.InvalidArgument, /as a function/)
  throwsCode(() => rt.setEventHandler(1), Status.InvalidArgument, /handler \(or null\) as a function/)
  assert.ok(throwsCode(() => rt.load([]), Status.InvalidArgument) instanceof TypeError)
  rt.close()
})

test('close unloads everything and the runtime stays usable', () => {
  const rt = new Runtime({ drainTimeoutMs: 50 })
  rt.loadAll([plugin('libchecksum.so'), plugin('libdependent.so'), plugin('libtext.so')])
  rt.close()
  assert.deepEqual(rt.modules(), [])
  rt.load(plugin('libtext.so'))
  assert.equal(rt.callSync('text', 'upper', 'abc').toString(), 'ABC')
  rt.close()
})
