// A plugin's error message belongs to the call that set it: a message left
// by module A — a failed host call it ignored before returning success —
// never shows up in a later, unrelated failure of module B, whether the
// calls are synchronous (the JavaScript thread) or asynchronous (call
// threads). Needs the core's per-call error scope (issue 8 item 21).
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { hotmod, plugin, throwsCode, rejectsCode } = require('./helpers')

const { Runtime, Status } = hotmod

function runtime() {
  const rt = new Runtime()
  for (const f of ['libchecksum.so', 'libdependent.so', 'libbadout.so', 'libtext.so', 'libprobe.so']) rt.load(plugin(f))
  // text.greet calls this, ignores its failure and greets with "Hello".
  rt.registerHostFunction('greeting', () => {
    throw new Error('a secret of the greeting host function')
  })
  return rt
}

// What module A's failures said; none of it may reach B's error.
const leaked = /text\.upper|declared dependencies|greeting|secret/

// badout.weird fails with status 99 and sets no message of its own.
function checkOwn(e) {
  assert.match(e.message, /badout@1\.0\.0 method 'weird'/)
  assert.match(e.message, /99/)
  assert.doesNotMatch(e.message, leaked, `module A's message leaked into module B's error: ${e.message}`)
}

test('an ignored failure of call_module in one module does not leak into another module\'s error', async () => {
  const rt = runtime()
  // dependent.undeclared calls text.upper, is refused, and returns the status as success.
  assert.equal(rt.callSync('dependent', 'undeclared').readInt32LE(), Status.InvalidArgument)
  checkOwn(throwsCode(() => rt.callSync('badout', 'weird'), Status.PluginError))
  assert.equal((await rt.call('dependent', 'undeclared')).readInt32LE(), Status.InvalidArgument)
  checkOwn(await rejectsCode(rt.call('badout', 'weird'), Status.PluginError))
  // Across the two paths: set on the JavaScript thread, failing on a call thread, and back.
  rt.callSync('dependent', 'undeclared')
  checkOwn(await rejectsCode(rt.call('badout', 'weird'), Status.PluginError))
  await rt.call('dependent', 'undeclared')
  checkOwn(throwsCode(() => rt.callSync('badout', 'weird'), Status.PluginError))
  rt.close()
})

test('an ignored failed host function call does not leak into another module\'s error', async () => {
  const rt = runtime()
  assert.equal(rt.callSync('text', 'greet', 'x').toString(), 'Hello, x!')
  checkOwn(throwsCode(() => rt.method('badout', 'weird').callSync(), Status.PluginError))
  assert.equal((await rt.call('text', 'greet', 'y')).toString(), 'Hello, y!')
  checkOwn(await rejectsCode(rt.method('badout', 'weird').call(), Status.PluginError))
  rt.close()
})

test('a module\'s own error message still reaches its caller', () => {
  const rt = runtime()
  rt.callSync('text', 'greet', 'x')
  const e = throwsCode(() => rt.callSync('probe', 'fail'), Status.PluginError, /probe: failure requested/)
  assert.doesNotMatch(e.message, leaked)
  rt.close()
})
