// hotmod/prometheus: a runtime's method metrics on a prom-client registry.
//
//   const { register } = require('hotmod/prometheus')
//   register(rt)                       // prom-client's default registry
//
// Each metric family of the runtime's own exposition (rt.statsPrometheus(),
// the same series the C API and Python expose) becomes one prom-client
// metric that reads it again at every scrape. prom-client is not a
// dependency of hotmod: pass its Registry (or let this module require it).
'use strict'

// One exposition line: name{labels} value.
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

function unescape(v) {
  return v.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c))
}

/** Parses the text exposition format into families, by name. */
function parse(text) {
  const families = new Map()
  let current = null
  for (const line of text.split('\n')) {
    if (line.startsWith('# HELP ')) {
      const rest = line.slice(7)
      const sp = rest.indexOf(' ')
      const name = sp < 0 ? rest : rest.slice(0, sp)
      current = { name, help: sp < 0 ? '' : rest.slice(sp + 1), type: 'untyped', values: [] }
      families.set(name, current)
    } else if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice(7).split(' ')
      if (families.has(name)) families.get(name).type = type
    } else if (line && !line.startsWith('#') && current) {
      const m = SAMPLE.exec(line)
      if (!m) continue
      const labels = {}
      for (const l of (m[2] || '').matchAll(LABEL)) labels[l[1]] = unescape(l[2])
      current.values.push({ metricName: m[1], labels, value: Number(m[3]) })
    }
  }
  return families
}

/**
 * Registers the runtime's metric families with `registry` (default:
 * prom-client's global `register`). Returns the names registered, for
 * `registry.removeSingleMetric(name)`. A closed runtime reports no series.
 */
function register(runtime, registry) {
  if (registry === undefined) registry = require('prom-client').register
  const read = () => {
    try {
      return parse(runtime.statsPrometheus())
    } catch {
      return new Map() // closed
    }
  }
  const names = []
  for (const [name, fam] of read()) {
    registry.registerMetric({
      name,
      help: fam.help,
      type: fam.type,
      aggregator: 'sum',
      get: async () => {
        const now = read().get(name)
        return { name, help: fam.help, type: fam.type, aggregator: 'sum', values: now ? now.values : [] }
      },
      reset: () => {},
    })
    names.push(name)
  }
  return names
}

module.exports = { register, parse }
