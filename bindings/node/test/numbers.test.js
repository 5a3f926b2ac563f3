// Every numeric option and argument is range-checked: a value out of range,
// NaN, an infinity or a non-number is a TypeError with Status.InvalidArgument
// whose message names the option, the accepted range and the value found —
// never a Rust panic or a GenericFailure, never wrapped or truncated.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { hotmod, throwsCode } = require('./helpers')

const { Runtime, Status, describeStatus } = hotmod
const MAX_MS = 2 ** 31 - 1

// [value, how the message shows it]
const bad = [
  [1e300, '1e+300'],
  [MAX_MS + 1, String(MAX_MS + 1)],
  [2 ** 64, '18446744073709551616'],
  [Number.MAX_VALUE, '1.7976931348623157e+308'],
  [Infinity, 'Infinity'],
  [-Infinity, '-Infinity'],
  [NaN, 'NaN'],
  [-1, '-1'],
  [-0.5, '-0.5'],
  [-1e-9, '-1e-9'],
  ['100', 'a string'],
  [100n, 'a bigint'],
  [null, 'null'],
  [true, 'a boolean'],
  [{}, 'an object'],
]
const good = [0, -0, 0.5, 1, 200, 1e-9, MAX_MS]

function checkMessage(e, ctx, option, shown) {
  assert.ok(e instanceof TypeError, `${option}=${shown}: expected a TypeError, got ${e.constructor.name}`)
  assert.ok(e.message.startsWith(`${ctx}: expected option '${option}' to be a number of milliseconds from 0 to ${MAX_MS}, found `), e.message)
  assert.ok(e.message.endsWith(`found ${shown}`), `${option}=${shown}: ${e.message}`)
  assert.doesNotMatch(e.message, /panicked|Duration|GenericFailure/)
}

test('drainTimeoutMs: out-of-range, NaN and non-numbers are InvalidArgument TypeErrors', () => {
  for (const [v, shown] of bad) {
    const e = throwsCode(() => new Runtime({ drainTimeoutMs: v }), Status.InvalidArgument)
    checkMessage(e, 'new Runtime', 'drainTimeoutMs', shown)
  }
  for (const v of good) new Runtime({ drainTimeoutMs: v }).close()
  new Runtime({ drainTimeoutMs: undefined }).close()
})

test('debounceMs: out-of-range, NaN and non-numbers are InvalidArgument TypeErrors', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hotmod-node-numbers-'))
  try {
    const rt = new Runtime()
    for (const [v, shown] of bad) {
      const e = throwsCode(() => rt.watch(dir, { debounceMs: v }), Status.InvalidArgument)
      checkMessage(e, 'Runtime.watch', 'debounceMs', shown)
    }
    for (const v of good) rt.watch(dir, { debounceMs: v }).stop()
    rt.close()
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('describeStatus: a number that is not exactly a code is no status; a non-number is a TypeError', () => {
  assert.equal(describeStatus(2003), 'plugin returned an error')
  assert.equal(describeStatus(-0), describeStatus(0))
  // Neither truncated (2003.5) nor wrapped modulo 2^32 (2^32 + 2003) onto a code.
  for (const v of [2003.5, 2 ** 32 + 2003, -(2 ** 32) + 2003, 1e300, NaN, Infinity, -Infinity, 2 ** 31, -(2 ** 31) - 1]) {
    assert.equal(describeStatus(v), null, String(v))
  }
  for (const [v, shown] of [['2003', 'a string'], [undefined, 'undefined'], [2003n, 'a bigint'], [null, 'null']]) {
    const e = throwsCode(() => describeStatus(v), Status.InvalidArgument)
    assert.ok(e instanceof TypeError)
    assert.equal(e.message, `describeStatus: expected the code as a number, found ${shown}`)
  }
})
