// hotmod for Node.js: loads the native addon (built from source by
// `npm install`, see scripts/build.js) and exports it. Its types are in
// index.d.ts, generated from the Rust sources.
'use strict'

const path = require('node:path')
const { inspect } = require('node:util')

let native
try {
  native = require(path.join(__dirname, 'hotmod.node'))
} catch (e) {
  const err = new Error(
    `hotmod: cannot load the native addon ${path.join(__dirname, 'hotmod.node')} (${e.message}); ` +
      'build it with `npm install` (or `npm rebuild hotmod`) in a checkout that has a Rust toolchain'
  )
  err.cause = e
  throw err
}

const { Runtime, Module, Method, Status, __callHandle, __callHandleInto, __callModule, __callName } = native
Object.freeze(Status)

// The synchronous calls go through plain N-API functions instead of the
// classes' generated method glue, which costs several times a whole call
// (see src/fast.rs). Each object's internal handle is fetched once.
const kRef = Symbol('hotmod.ref')
function ref(obj, Class, method) {
  const r = obj != null ? obj[kRef] : undefined
  if (r !== undefined) return r
  if (!(obj instanceof Class)) {
    const err = new TypeError(`${Class.name}.${method}: expected to be called on a ${Class.name}, found ${obj === null ? 'null' : typeof obj}`)
    err.code = Status.InvalidArgument
    throw err
  }
  const made = obj.__ref
  Object.defineProperty(obj, kRef, { value: made })
  return made
}

// Outputs of at most COPY_THRESHOLD bytes arrive in this scratch buffer
// (the native side returns their length), and are copied out into a Buffer
// from Node's pool: an order of magnitude cheaper than creating a Buffer
// through N-API. Larger outputs arrive as Buffers, external ones over the
// plugin's memory.
const scratch = native.__outputScratch()

// Taken once: a global lookup per call shows in the cost of a call.
const { allocUnsafe } = Buffer

function result(r) {
  if (typeof r !== 'number') return r
  const out = allocUnsafe(r)
  if (r <= 32) {
    for (let i = 0; i < r; i++) out[i] = scratch[i]
  } else {
    scratch.copy(out, 0, 0, r)
  }
  return out
}

Method.prototype.callSync = function callSync(input) {
  return result(__callHandle(ref(this, Method, 'callSync'), input))
}
Method.prototype.callSyncInto = function callSyncInto(input, target) {
  return __callHandleInto(ref(this, Method, 'callSyncInto'), input, target)
}
Module.prototype.callSync = function callSync(method, input) {
  return result(__callModule(ref(this, Module, 'callSync'), method, input))
}
Runtime.prototype.callSync = function callSync(module, method, input) {
  return result(__callName(ref(this, Runtime, 'callSync'), module, method, input))
}

// The raw entry points are reached only through the methods above.
for (const name of ['__callHandle', '__callHandleInto', '__callModule', '__callName', '__outputScratch']) {
  delete native[name]
}

// console.log(module) shows what it declares rather than an empty object.
Module.prototype[inspect.custom] = function (depth, options, inspectFn) {
  return `Module ${(inspectFn || inspect)(this.info(), options)}`
}
Method.prototype[inspect.custom] = function (depth, options, inspectFn) {
  return `Method ${(inspectFn || inspect)(this.toJSON(), options)}`
}

// Errors thrown by the addon are plain Errors/TypeErrors with a numeric
// `code`; HotmodError recognises them by that shape (see index.d.ts).
const { describeStatus } = native
class HotmodError extends Error {
  static [Symbol.hasInstance](e) {
    return e instanceof Error && typeof e.code === 'number' && describeStatus(e.code) !== null
  }
}
native.HotmodError = HotmodError

module.exports = native
