// Manifests: a TOML file listing the plugins to run, applied and re-applied.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { hotmod, plugin, throwsCode } = require('./helpers')

const { Runtime, Status } = hotmod

test('a manifest is applied, re-applied after edits, and refused when invalid', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hotmod-node-manifest-'))
  const file = path.join(dir, 'plugins.toml')
  const entry = (p, extra = '') => `[[plugin]]\npath = ${JSON.stringify(p)}\n${extra}\n`
  const rt = new Runtime()
  try {
    fs.writeFileSync(file, entry(plugin('libchecksum.so')) + entry(plugin('libtext.so'), 'config = "cfg"'))
    assert.deepEqual(rt.applyManifest(file), { loaded: ['checksum', 'text'], upgraded: [], unloaded: [], unchanged: [] })
    const crc = rt.method('checksum', 'crc32')
    assert.deepEqual(rt.applyManifest(file), { loaded: [], upgraded: [], unloaded: [], unchanged: ['checksum', 'text'] })

    fs.writeFileSync(file, entry(plugin('libchecksum-v2.so')))
    assert.deepEqual(rt.applyManifest(file), { loaded: [], upgraded: ['checksum'], unloaded: ['text'], unchanged: [] })
    assert.equal(rt.module('checksum').version, '2.0.0')
    assert.equal(crc.callSync('hello').length, 4, 'handles follow the upgrade')
    assert.deepEqual(rt.modules().map((m) => m.name), ['checksum'])

    fs.writeFileSync(file, entry(plugin('libchecksum.so'), 'enabeld = false'))
    throwsCode(() => rt.applyManifest(file), Status.BadManifest, /enabeld/)
    fs.writeFileSync(file, entry(plugin('libchecksum.so'), `sha256 = "${'0'.repeat(64)}"`))
    throwsCode(() => rt.applyManifest(file), Status.HashMismatch, /plugins\.toml/)
    assert.equal(rt.module('checksum').version, '2.0.0', 'a failed application changes nothing')
    throwsCode(() => rt.applyManifest(path.join(dir, 'missing.toml')), Status.BadManifest, /missing\.toml/)
    throwsCode(() => rt.applyManifest(7), Status.InvalidArgument, /manifest path as a string/)
  } finally {
    rt.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
