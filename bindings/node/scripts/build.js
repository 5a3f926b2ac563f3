#!/usr/bin/env node
// Builds the native addon from source: `cargo build` of this crate (its own
// workspace and target directory), then copies the library to hotmod.node.
// Runs as the package's install script, so `npm install` / `npm ci` in this
// folder (or `npm install path/to/bindings/node`) builds it; needs only
// Node, npm and a Rust toolchain — nothing is downloaded but crates.
//
//   node scripts/build.js            release build (the default)
//   node scripts/build.js --debug    debug build
//   node scripts/build.js --dts      also regenerate index.d.ts (see
//                                    scripts/typedefs.js)
//   node scripts/build.js --check-dts  fail if index.d.ts is out of date
'use strict'

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.resolve(__dirname, '..')
const args = new Set(process.argv.slice(2))
const release = !args.has('--debug')
const targetDir = path.join(root, 'target')
// The type definitions napi-derive writes while compiling; a fixed place, so
// that every build sees the same environment and cargo rebuilds nothing.
const typeDefDir = path.join(targetDir, 'napi-type-defs')
const crateName = 'hotmod-node'

function fail(message) {
  console.error(`hotmod: ${message}`)
  process.exit(1)
}

function build() {
  const cargo = process.env.CARGO || 'cargo'
  const env = { ...process.env, NAPI_TYPE_DEF_TMP_FOLDER: typeDefDir }
  // The definitions are written only when the crate compiles: if they are
  // missing, force that with a new value of the variable napi-build watches.
  // The value is kept, so the next build sees the same environment.
  fs.mkdirSync(typeDefDir, { recursive: true })
  const forceFile = path.join(typeDefDir, '.force-build')
  let force = fs.existsSync(forceFile) ? fs.readFileSync(forceFile, 'utf8') : '0'
  if (!fs.existsSync(path.join(typeDefDir, crateName))) {
    force = String(Date.now())
    fs.writeFileSync(forceFile, force)
  }
  env[`NAPI_FORCE_BUILD_${crateName.toUpperCase().replace(/-/g, '_')}`] = force
  const cargoArgs = [
    'build',
    '--manifest-path', path.join(root, 'Cargo.toml'),
    '--target-dir', targetDir,
    '--lib',
    '--message-format', 'json-render-diagnostics',
  ]
  if (release) cargoArgs.push('--release')
  const r = spawnSync(cargo, cargoArgs, { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 256 << 20 })
  if (r.error) {
    fail(`cannot run '${cargo}' (${r.error.message}); the addon is built from source and needs a Rust toolchain (https://rustup.rs)`)
  }
  if (r.status !== 0) fail(`'${cargo} ${cargoArgs.join(' ')}' failed with exit code ${r.status}`)
  let library = null
  for (const line of r.stdout.toString().split('\n')) {
    if (!line.startsWith('{')) continue
    const msg = JSON.parse(line)
    if (msg.reason === 'compiler-artifact' && msg.target && msg.target.name === crateName.replace(/-/g, '_')) {
      library = msg.filenames.find((f) => /\.(so|dylib|dll)$/.test(f)) || library
    }
  }
  if (!library) fail(`cargo reported no library for ${crateName}`)
  const dest = path.join(root, 'hotmod.node')
  // Replace, never overwrite in place: a running process may have the old
  // file mapped.
  const tmp = `${dest}.${process.pid}.tmp`
  fs.copyFileSync(library, tmp)
  fs.renameSync(tmp, dest)
}

async function main() {
  build()
  if (args.has('--dts') || args.has('--check-dts')) {
    const dts = require('./typedefs').render(typeDefDir)
    const file = path.join(root, 'index.d.ts')
    if (args.has('--dts')) {
      fs.writeFileSync(file, dts)
    } else {
      const committed = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : ''
      if (committed !== dts) {
        fail('index.d.ts is out of date with the Rust sources: run `make -C bindings/node dts` and commit it')
      }
    }
  }
}

main().catch((e) => fail(e.stack || String(e)))
