/** hotmod/prometheus: a runtime's method metrics on a prom-client registry. */
import type { Runtime } from './index'

/** One sample of a parsed exposition. */
export interface Sample {
  metricName: string
  labels: Record<string, string>
  value: number
}

/** One metric family of a parsed exposition. */
export interface Family {
  name: string
  help: string
  type: string
  values: Sample[]
}

/** The part of a prom-client Registry this module uses. */
export interface RegistryLike {
  registerMetric(metric: unknown): void
}

/**
 * Registers the runtime's metric families with `registry` (default:
 * prom-client's global registry); each is read again at every scrape.
 * Returns the family names, for `registry.removeSingleMetric(name)`.
 */
export function register(runtime: Runtime, registry?: RegistryLike): string[]

/** Parses the Prometheus text exposition format into families by name. */
export function parse(text: string): Map<string, Family>
