// Prometheus text exposition helpers and the agent-wide metrics.
import type { Agent } from './agent.js';
import type { TrafficCounters } from '../datapath/messages.js';

export function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** One metric family: HELP, TYPE and its samples. */
export function family(name: string, type: 'counter' | 'gauge', help: string, samples: { labels?: Record<string, string>; value: number }[]): string {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`];
  for (const s of samples) {
    const l = s.labels && Object.keys(s.labels).length
      ? '{' + Object.entries(s.labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',') + '}'
      : '';
    lines.push(`${name}${l} ${Number.isFinite(s.value) ? s.value : 0}`);
  }
  return lines.join('\n') + '\n';
}

export function agentMetrics(agent: Agent): string {
  const health = agent.health.state();
  const mem = process.memoryUsage();
  return [
    family('veil_agent_health', 'gauge', 'Agent health: 1 for the current state.', (['Ok', 'Degraded', 'Failure'] as const).map((s) => ({ labels: { state: s }, value: s === health ? 1 : 0 }))),
    family('veil_agent_health_check_failing', 'gauge', 'Health checks that are not Ok (1 each), with their state.',
      agent.health.problems().map((c) => ({ labels: { check: c.name, state: c.state }, value: 1 }))),
    family('veil_agent_start_time_seconds', 'gauge', 'When the agent started (unix time).', [{ value: agent.startedAt.getTime() / 1000 }]),
    family('veil_agent_resident_memory_bytes', 'gauge', 'Resident set size of the agent.', [{ value: mem.rss }]),
  ].join('');
}

/** The datapath families both modes share: inner packets and bytes each way, drops by reason. */
export function datapathMetrics(counters: TrafficCounters, drops: Record<string, number>): string {
  return [
    family('veil_datapath_packets_total', 'counter', 'Inner packets through the tunnel.', [
      { labels: { direction: 'tx' }, value: counters.txPackets }, { labels: { direction: 'rx' }, value: counters.rxPackets }]),
    family('veil_datapath_bytes_total', 'counter', 'Inner bytes through the tunnel.', [
      { labels: { direction: 'tx' }, value: counters.txBytes }, { labels: { direction: 'rx' }, value: counters.rxBytes }]),
    family('veil_datapath_drops_total', 'counter', 'Dropped packets by reason.', Object.entries(drops).map(([reason, value]) => ({ labels: { reason }, value }))),
  ].join('');
}
