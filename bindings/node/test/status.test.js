'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { hotmod } = require('./helpers')

const { Status, statusTable, describeStatus } = hotmod

test('Status mirrors every status of the core, with the same numbers', () => {
  const table = statusTable()
  assert.ok(table.length >= 30)
  for (const { name, code, description } of table) {
    assert.equal(Status[name], code, `Status.${name}`)
    assert.equal(describeStatus(code), description)
  }
  const numeric = Object.entries(Status).filter(([, v]) => typeof v === 'number')
  assert.equal(numeric.length, table.length, 'Status has no entry the core lacks')
})

test('Status is frozen and has the documented numbers', () => {
  assert.ok(Object.isFrozen(Status))
  assert.throws(() => {
    'use strict'
    Status.PluginError = 1
  }, TypeError)
  assert.equal(Status.FileMissing, 1001)
  assert.equal(Status.NameConflict, 1011)
  assert.equal(Status.InitFailed, 1013)
  assert.equal(Status.MethodNotFound, 2001)
  assert.equal(Status.ModuleNotFound, 2002)
  assert.equal(Status.PluginError, 2003)
  assert.equal(Status.PluginPanicked, 2004)
  assert.equal(Status.StaleHandle, 2008)
  assert.equal(Status.InvalidArgument, 3002)
})

test('describeStatus answers null for numbers that are not statuses', () => {
  assert.equal(describeStatus(2003), 'plugin returned an error')
  assert.equal(describeStatus(42), null)
})

test('the module exports what index.d.ts declares', () => {
  const dts = require('node:fs').readFileSync(require('node:path').join(__dirname, '..', 'index.d.ts'), 'utf8')
  for (const name of Object.keys(hotmod)) {
    if (name.startsWith('__')) continue
    assert.match(dts, new RegExp(`export declare (class|function|const|enum) ${name}\\b`), `${name} is declared`)
  }
  for (const m of dts.matchAll(/export declare (?:class|function|const|enum) (\w+)/g)) {
    assert.ok(m[1] in hotmod, `${m[1]} is exported`)
  }
  assert.equal(typeof hotmod.VERSION, 'string')
})
