'use strict'
// hotmod/prometheus: the runtime's series on a prom-client registry.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const client = require('prom-client')
const { Runtime } = require('..')
const { register, parse } = require('../prometheus')
const { plugin } = require('./helpers')

function value(text, name, labels) {
  for (const fam of parse(text).values()) {
    for (const v of fam.values) {
      if (v.metricName === name && Object.entries(labels).every(([k, x]) => v.labels[k] === x)) return v.value
    }
  }
  assert.fail(`no ${name} ${JSON.stringify(labels)} in\n${text}`)
}

test('one line puts the runtime on a prom-client registry, read at each scrape', async () => {
  const registry = new client.Registry()
  const rt = new Runtime()
  const crc32 = rt.load(plugin('libchecksum.so')).method('crc32')
  const names = register(rt, registry)
  assert.ok(names.includes('hotmod_method_calls_total'), names.join(','))
  for (let i = 0; i < 3; i++) crc32.callSync(Buffer.from('hello'))
  let text = await registry.metrics()
  assert.equal(value(text, 'hotmod_method_calls_total', { module: 'checksum', method: 'crc32' }), 3)
  crc32.callSync(Buffer.from('more'))
  text = await registry.metrics()
  assert.equal(value(text, 'hotmod_method_calls_total', { module: 'checksum', method: 'crc32' }), 4)
  rt.close()
  text = await registry.metrics()
  assert.ok(!/hotmod_method_calls_total\{/.test(text), 'a closed runtime reports no series')
})

test('label values with quotes and backslashes survive the round trip', () => {
  const fams = parse('# HELP x_total h\n# TYPE x_total counter\nx_total{a="q\\"b\\\\c",b="n\\nl"} 7\n')
  const v = fams.get('x_total').values[0]
  assert.deepEqual(v.labels, { a: 'q"b\\c', b: 'n\nl' })
  assert.equal(v.value, 7)
  assert.equal(fams.get('x_total').type, 'counter')
})
