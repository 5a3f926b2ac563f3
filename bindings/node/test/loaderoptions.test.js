// ELF facts of modules, the file size cap, preflight in a child process,
// the output cap and versions kept mapped.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { hotmod, plugin, throwsCode } = require('./helpers')

const { Runtime, Status } = hotmod

const repo = path.resolve(__dirname, '../../..')
const worker = path.join(repo, 'target/release/hotmod-worker')

function helper() {
  assert.ok(fs.existsSync(worker), `expected the preflight helper ${worker}: run \`make -C ${repo} plugins\``)
  return worker
}

test('module info carries the ELF facts of a plain plugin', () => {
  const rt = new Runtime()
  try {
    const m = rt.load(plugin('libchecksum.so'))
    const { elf, staysMapped } = m.info()
    assert.equal(elf.machine, 'x86_64') // EM_X86_64 (62)
    assert.equal(elf.class, 64)
    assert.equal(elf.nodelete, false)
    assert.equal(elf.staticTls, false)
    assert.deepEqual(elf.gnuUnique, [])
    assert.equal(elf.goRuntime, false)
    assert.equal(elf.entryChecked, true)
    assert.deepEqual(elf.unmapBlockers, [])
    assert.equal(typeof elf.constructors, 'number')
    assert.equal(staysMapped, false)
    assert.equal(m.staysMapped, false)
    assert.deepEqual(m.elf, elf)
    assert.deepEqual(JSON.parse(JSON.stringify(m)).elf, elf)
  } finally {
    rt.close()
  }
})

test('a NODELETE plugin stays mapped, and says why', () => {
  const rt = new Runtime()
  try {
    const m = rt.load(plugin('libfacts_nodelete.so'))
    assert.equal(m.info().elf.nodelete, true)
    assert.equal(m.info().staysMapped, true)
    assert.equal(m.staysMapped, true)
    assert.ok(m.elf.unmapBlockers.some((why) => why.includes('NODELETE')), m.elf.unmapBlockers)
  } finally {
    rt.close()
  }
})

test('maxFileSize refuses a larger file before it is read', () => {
  const rt = new Runtime()
  try {
    const file = plugin('libchecksum.so')
    const size = fs.statSync(file).size
    const e = throwsCode(() => rt.load(file, { maxFileSize: size - 1 }), Status.FileTooLarge, /libchecksum\.so/)
    assert.equal(e.code, 1017)
    assert.ok(e.message.includes(String(size - 1)), e.message)
    assert.equal(rt.modules().length, 0)
    const m = rt.load(file, { maxFileSize: size })
    throwsCode(() => rt.upgrade(m.name, plugin('libchecksum-v2.so'), { maxFileSize: 1 }), Status.FileTooLarge)
    throwsCode(() => rt.loadAll([{ path: plugin('libdependent.so'), maxFileSize: 16 }]), Status.FileTooLarge)
    for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 53, '100']) {
      throwsCode(() => rt.load(file, { maxFileSize: bad }), Status.InvalidArgument, /maxFileSize/)
    }
  } finally {
    rt.close()
  }
})

test('preflight "on" refuses a crashing constructor; a good plugin passes', () => {
  const rt = new Runtime()
  try {
    const segv = path.join(path.dirname(plugin('libchecksum.so')), 'faults', 'libctor_segv.so')
    assert.ok(fs.existsSync(segv), `expected ${segv}: run \`make -C ${repo} plugins\``)
    const e = throwsCode(
      () => rt.load(segv, { preflight: 'on', preflightHelper: helper(), preflightTimeoutMs: 30000 }),
      Status.PreflightFailed,
      /libctor_segv\.so/
    )
    assert.equal(e.code, 1018)
    const m = rt.load(plugin('libchecksum.so'), { preflight: 'on', preflightHelper: helper() })
    assert.equal(m.callSync('crc32', 'abc').length, 4)
    assert.equal(rt.upgrade(m.name, plugin('libchecksum-v2.so'), { preflight: 'on', preflightHelper: helper() }).name, m.name)
  } finally {
    rt.close()
  }
})

test('preflight options are checked', () => {
  const rt = new Runtime()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hotmod-preflight-'))
  try {
    const file = plugin('libchecksum.so')
    throwsCode(() => rt.load(file, { preflight: 'always' }), Status.InvalidArgument,
      /Runtime\.load: expected option 'preflight' to be 'off', 'if-available' or 'on', found "always"/)
    throwsCode(() => rt.load(file, { preflight: true }), Status.InvalidArgument, /preflight/)
    throwsCode(() => rt.load(file, { preflight: 'on', preflightTimeoutMs: -1 }), Status.InvalidArgument, /preflightTimeoutMs/)
    throwsCode(() => rt.watch(dir, { preflight: 'sometimes' }), Status.InvalidArgument, /Runtime\.watch/)
    throwsCode(() => rt.watch(dir, { sha256: '00' }), Status.InvalidArgument, /unknown option 'sha256'/)
    // "on" with a missing helper refuses rather than loading unchecked.
    assert.throws(() => rt.load(file, { preflight: 'on', preflightHelper: path.join(dir, 'none') }))
    assert.equal(rt.modules().length, 0)
    rt.load(file, { preflight: 'off', preflightHelper: path.join(dir, 'none') })
  } finally {
    rt.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('watch takes the load options', () => {
  const rt = new Runtime()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hotmod-watchopts-'))
  try {
    fs.copyFileSync(plugin('libchecksum.so'), path.join(dir, 'libchecksum.so'))
    let w = rt.watch(dir, { maxFileSize: 1 })
    assert.equal(rt.modules().length, 0)
    w.stop()
    w = rt.watch(dir, { preflight: 'on', preflightHelper: helper() })
    assert.deepEqual(rt.modules().map((m) => m.name), ['checksum'])
    w.stop()
  } finally {
    rt.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('maxOutputSize caps what a plugin asks the host to allocate', () => {
  // text.upper asks for more than the 256 bytes first offered; checksum.hex
  // hands over its own memory, which the cap does not bound.
  const rt = new Runtime({ maxOutputSize: 1024 })
  try {
    rt.load(plugin('libtext.so'))
    assert.equal(rt.callSync('text', 'upper', 'x'.repeat(1000)).toString(), 'X'.repeat(1000))
    const e = throwsCode(() => rt.callSync('text', 'upper', 'x'.repeat(100000)), Status.OutputTooLarge, /1024/)
    assert.equal(e.code, 2009)
    assert.ok(e.message.includes('upper'), e.message)
    rt.load(plugin('libchecksum.so'))
    assert.equal(rt.callSync('checksum', 'hex', Buffer.alloc(100000, 1)).length, 200000)
  } finally {
    rt.close()
  }
  const plain = new Runtime()
  try {
    plain.load(plugin('libtext.so'))
    assert.equal(plain.callSync('text', 'upper', 'x'.repeat(100000)).length, 100000)
  } finally {
    plain.close()
  }
  for (const bad of [-1, 0.5, NaN, 2 ** 60, null]) {
    throwsCode(() => new Runtime({ maxOutputSize: bad }), Status.InvalidArgument, /maxOutputSize/)
  }
})

test('keptMapped counts versions that cannot be unmapped, up to maxKeptMapped', () => {
  const rt = new Runtime({ maxKeptMapped: 2 })
  try {
    assert.equal(rt.keptMapped, 0)
    const m = rt.load(plugin('libkeep-v1.so'))
    assert.equal(m.staysMapped, true)
    assert.equal(m.safeToUnload, false)
    rt.upgrade('keep', plugin('libkeep-v2.so'))
    assert.equal(rt.keptMapped, 1)
    rt.upgrade('keep', plugin('libkeep-v1.so'))
    assert.equal(rt.keptMapped, 2)
    const e = throwsCode(() => rt.upgrade('keep', plugin('libkeep-v2.so')), Status.KeptMappedLimit)
    assert.equal(e.code, 1019)
    assert.equal(rt.callSync('keep', 'version').toString(), '1.0.0')
    rt.load(plugin('libchecksum.so')) // can be unmapped: not refused
  } finally {
    rt.close()
  }
  throwsCode(() => new Runtime({ maxKeptMapped: -3 }), Status.InvalidArgument, /maxKeptMapped/)
})
