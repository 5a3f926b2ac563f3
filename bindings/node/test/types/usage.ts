// Compiled (not run) by types.test.js with `tsc --strict --noEmit`: the
// declarations in index.d.ts describe the API as it is used.
import {
  Runtime,
  Module,
  Method,
  Status,
  LifecycleEvent,
  MethodStats,
  ModuleInfo,
  ManifestReport,
  Watcher,
  bufferAddress,
  describeStatus,
  statusTable,
  COPY_THRESHOLD,
  VERSION,
} from '../..'

async function main(): Promise<void> {
  const rt = new Runtime({ drainTimeoutMs: 100 })
  const m: Module = rt.load('/plugins/libchecksum.so', { sha256: 'ab', config: Buffer.from('x'), allowWorldWritable: false })
  const all: Module[] = rt.loadAll(['/a.so', { path: '/b.so', config: 'cfg' }])
  const info: ModuleInfo = m.info()
  const names: string[] = info.methods.map((x) => x.name + x.signature + x.signatureHash)
  const crc: Method = rt.method('checksum', 'crc32')
  const a: Buffer = crc.callSync(Buffer.from('hello'))
  const b: Buffer = await crc.call(new Uint8Array(4))
  const c: Buffer = rt.callSync('checksum', 'crc32', new ArrayBuffer(3))
  const d: Buffer = await rt.call('checksum', 'crc32', 'text')
  const e: Buffer = m.callSync('crc32', new DataView(new ArrayBuffer(2)))
  const n: number = crc.callSyncInto(undefined, new Uint32Array(1))
  const up: Module = rt.upgrade('checksum', '/plugins/libchecksum-v2.so', { force: true })
  rt.unload('checksum', { cascade: true })
  const report: ManifestReport = rt.applyManifest('/etc/plugins.toml')
  const w: Watcher = rt.watch('/opt/plugins', { debounceMs: 100, unloadOnRemove: true, config: 'x' })
  const watching: boolean = w.running && w.dir.length > 0
  w.stop()
  const changed: string[] = [...report.loaded, ...report.upgraded, ...report.unloaded, ...report.unchanged]
  rt.registerHostFunction('greeting', (input: Buffer) => input.toString().toUpperCase())
  rt.registerHostFunction('nothing', () => undefined)
  const removed: boolean = rt.unregisterHostFunction('greeting')
  rt.setEventHandler((ev: LifecycleEvent) => {
    if (ev.kind === 'upgradeFailed') console.log(ev.code === Status.InitFailed, ev.message)
  })
  rt.setEventHandler(null)
  const stats: MethodStats[] = rt.stats()
  const text: string = rt.statsPrometheus()
  const state: 'loaded' | 'validated' | 'active' | 'draining' | 'unloaded' = rt.state('checksum')
  const addr: bigint = bufferAddress(a)
  const desc: string | null = describeStatus(Status.PluginError)
  const table = statusTable().map((s) => s.name + s.code + s.description)
  try {
    rt.callSync('x', 'y')
  } catch (err) {
    if ((err as { code?: number }).code === Status.ModuleNotFound) rt.close()
  }
  console.log(watching, changed, all, names, a, b, c, d, e, n, up, removed, stats, text, state, addr, desc, table, COPY_THRESHOLD, VERSION)
}

void main()
