// Files that are not valid plugins, and plugins that break the output
// protocol: each failure reaches JavaScript with its status code, and the
// process carries on. The fixtures are compiled here from fixtures/faults.c.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { hotmod, plugin, throwsCode, rejectsCode } = require('./helpers')

const { Runtime, Status } = hotmod
const include = path.resolve(__dirname, '../../../include')
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hotmod-node-faults-'))
test.after(() => fs.rmSync(dir, { recursive: true, force: true }))

function build(variant) {
  const out = path.join(dir, `lib${variant.toLowerCase()}.so`)
  const cc = process.env.CC || 'cc'
  execFileSync(cc, ['-std=c11', '-O2', '-fPIC', '-shared', `-I${include}`, `-D${variant}`, path.join(__dirname, 'fixtures', 'faults.c'), '-o', out], {
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  return out
}

test('files that are not valid plugins are refused with their status', () => {
  const rt = new Runtime()
  throwsCode(() => rt.load(build('NO_ENTRY')), Status.EntrySymbolMissing, /hotmod_plugin_v1/)
  throwsCode(() => rt.load(build('BAD_MAGIC')), Status.NotAPlugin)
  throwsCode(() => rt.load(build('BAD_ABI')), Status.AbiUnsupported, /99/)
  throwsCode(() => rt.load(build('BAD_NAME')), Status.InvalidDescriptor)
  assert.deepEqual(rt.modules(), [])
  rt.load(plugin('libprobe.so'))
  assert.equal(rt.callSync('probe', 'echo', 'still fine').toString(), 'still fine')
  rt.close()
})

test('outputs that break the protocol are refused, sync and async', async () => {
  const rt = new Runtime()
  rt.load(build('BAD_OUTPUT'))
  throwsCode(() => rt.callSync('badout', 'overflow'), Status.InvalidOutput, /overflow/)
  await rejectsCode(rt.call('badout', 'overflow'), Status.InvalidOutput)
  throwsCode(() => rt.callSync('badout', 'greedy'), Status.OutputTooLarge, /greedy/)
  await rejectsCode(rt.method('badout', 'greedy').call(), Status.OutputTooLarge)
  const s = rt.stats().find((x) => x.method === 'overflow')
  assert.equal(s.errors, 2)
  rt.close()
})
