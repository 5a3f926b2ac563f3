// Files that are not valid plugins, and plugins that break the output
// protocol: each failure reaches JavaScript with its status code, and the
// process carries on. The fault fixtures are built by `make plugins` at the
// repository root (sources in tests/fixtures: noentry.c, bad.c, badout.c).
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { hotmod, plugin, throwsCode, rejectsCode } = require('./helpers')

const { Runtime, Status } = hotmod

test('files that are not valid plugins are refused with their status', () => {
  const rt = new Runtime()
  throwsCode(() => rt.load(plugin('libnoentry.so')), Status.EntrySymbolMissing, /hotmod_plugin_v1/)
  throwsCode(() => rt.load(plugin('libbad_magic.so')), Status.NotAPlugin)
  throwsCode(() => rt.load(plugin('libabi_v2.so')), Status.AbiUnsupported, /ABI 2\.0/)
  throwsCode(() => rt.load(plugin('libempty_name.so')), Status.InvalidDescriptor)
  assert.deepEqual(rt.modules(), [])
  rt.load(plugin('libprobe.so'))
  assert.equal(rt.callSync('probe', 'echo', 'still fine').toString(), 'still fine')
  rt.close()
})

test('outputs that break the protocol are refused, sync and async', async () => {
  const rt = new Runtime()
  rt.load(plugin('libbadout.so'))
  throwsCode(() => rt.callSync('badout', 'overflow'), Status.InvalidOutput, /overflow/)
  await rejectsCode(rt.call('badout', 'overflow'), Status.InvalidOutput)
  throwsCode(() => rt.callSync('badout', 'greedy'), Status.OutputTooLarge, /greedy/)
  await rejectsCode(rt.method('badout', 'greedy').call(), Status.OutputTooLarge)
  const s = rt.stats().find((x) => x.method === 'overflow')
  assert.equal(s.errors, 2)
  rt.close()
})
