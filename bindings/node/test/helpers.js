// Shared test helpers: where the built plugins are, status checks, GC.
'use strict'

const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const v8 = require('node:v8')
const vm = require('node:vm')

const hotmod = require('..')

/** Folder of the example and fixture plugins (`make plugins` at the repository root). */
const pluginDir = process.env.HOTMOD_PLUGIN_DIR || path.resolve(__dirname, '../../../build/plugins')

/** Absolute path of a built plugin; fails clearly if it was not built. */
function plugin(file) {
  const p = path.join(pluginDir, file)
  if (!fs.existsSync(p)) {
    throw new Error(`test plugin ${p} is missing: run \`make -C ${path.resolve(__dirname, '../../..')} plugins\` (or set HOTMOD_PLUGIN_DIR)`)
  }
  return p
}

/** Asserts that `fn()` throws an Error whose code is `code` (and message matches `re`). */
function throwsCode(fn, code, re) {
  let caught
  try {
    fn()
  } catch (e) {
    caught = e
  }
  assert.ok(caught, `expected an error with code ${code}, nothing was thrown`)
  checkError(caught, code, re)
  return caught
}

/** Asserts that `promise` rejects with an Error whose code is `code`. */
async function rejectsCode(promise, code, re) {
  let caught
  try {
    await promise
  } catch (e) {
    caught = e
  }
  assert.ok(caught, `expected a rejection with code ${code}, the promise resolved`)
  checkError(caught, code, re)
  return caught
}

function checkError(e, code, re) {
  assert.ok(e instanceof Error, `expected an Error, got ${e}`)
  assert.equal(e.code, code, `expected code ${code} (${hotmod.describeStatus(code)}), got ${e.code}: ${e.message}`)
  if (re) assert.match(e.message, re)
}

// A garbage collector callable without --expose-gc on the command line.
v8.setFlagsFromString('--expose-gc')
const collect = vm.runInNewContext('gc')

/** Runs full GCs and lets finalizers (which Node runs from setImmediate) go. */
async function gc() {
  for (let i = 0; i < 3; i++) {
    collect()
    await new Promise((resolve) => setImmediate(resolve))
  }
}

/** Polls `cond` (GC in between) until it is true or `ms` pass. */
async function eventually(cond, ms = 5000) {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) return false
    await gc()
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return true
}

/** probe.counts as numbers: how many `give` buffers were handed out / released. */
function probeCounts(rt) {
  const b = rt.callSync('probe', 'counts')
  return { gives: Number(b.readBigUInt64LE(0)), releases: Number(b.readBigUInt64LE(8)) }
}

function u32le(n) {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n)
  return b
}

module.exports = { hotmod, plugin, pluginDir, throwsCode, rejectsCode, gc, eventually, probeCounts, u32le }
