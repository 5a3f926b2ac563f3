'use strict'
// The README's TypeScript blocks compile under `tsc --strict` and run as
// written, against the built example plugins (HOTMOD_PLUGINS).
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { pluginDir } = require('./helpers')

const root = path.resolve(__dirname, '..')

function tsBlocks() {
  const text = fs.readFileSync(path.join(root, 'README.md'), 'utf8')
  return [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1])
}

test('the quickstart type-checks under --strict and runs as written', () => {
  const blocks = tsBlocks()
  assert.ok(blocks.length >= 1, 'README.md has a ts block')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hotmod-readme-'))
  try {
    // The reader's project: `hotmod` installed (here, a link to this package).
    fs.mkdirSync(path.join(dir, 'node_modules'))
    fs.symlinkSync(root, path.join(dir, 'node_modules', 'hotmod'), 'dir')
    fs.writeFileSync(path.join(dir, 'quickstart.ts'), blocks[0])
    fs.writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          target: 'es2022',
          module: 'commonjs',
          outDir: 'out',
          types: ['node'],
          typeRoots: [path.join(root, 'node_modules', '@types')],
        },
        files: ['quickstart.ts'],
      })
    )
    const tsc = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', dir], { encoding: 'utf8' })
    assert.equal(tsc.status, 0, `tsc --strict on the README's quickstart:\n${tsc.stdout}${tsc.stderr}`)
    const run = spawnSync(process.execPath, [path.join(dir, 'out', 'quickstart.js')], {
      encoding: 'utf8',
      env: { ...process.env, HOTMOD_PLUGINS: pluginDir },
      timeout: 60_000,
    })
    assert.equal(run.status, 0, `the quickstart failed:\n${run.stdout}${run.stderr}`)
    const lines = run.stdout.trim().split('\n')
    assert.match(lines[0], /^checksum 1\.0\.0 crc32,/)
    assert.deepEqual(lines.slice(1), ['907060870', '4', '6869', 'not found: 2001', 'true true'])
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
