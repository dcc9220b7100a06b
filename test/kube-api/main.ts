// The test API server as a process of its own, for a lab: started inside a lab namespace (so the
// agents in the node namespaces reach it over the lab's underlay, as pods reach a real API server)
// and on a unix socket (for the test process outside the namespaces). Prints one JSON line when it
// listens; stops on SIGTERM.
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { TestApiServer } from './test-api-server.js';
import type { UserInfo } from './admission-policy.js';

const { values } = parseArgs({
  options: {
    listen: { type: 'string' }, socket: { type: 'string' }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' },
    token: { type: 'string' }, identities: { type: 'string' }, 'bookmark-ms': { type: 'string', default: '1000' },
  },
});
if (!values.listen || !values.socket) {
  process.stderr.write('usage: main.js --listen HOST:PORT --socket PATH [--tls-cert F --tls-key F] [--token T] [--identities FILE (JSON: token -> user)] [--bookmark-ms N]\n');
  process.exit(2);
}
const tls = values['tls-cert'] && values['tls-key'] ? { cert: values['tls-cert'], key: values['tls-key'] } : undefined;
process.on('uncaughtException', (e) => { process.stderr.write(`test API server: uncaught ${e.stack ?? String(e)}\n`); process.exit(1); });
const server = new TestApiServer({ bookmarkIntervalMs: Number(values['bookmark-ms']), tls, token: values.token,
  identities: values.identities ? JSON.parse(readFileSync(values.identities, 'utf8')) as Record<string, UserInfo> : undefined });
const at = values.listen.lastIndexOf(':');
const url = await server.listen({ host: values.listen.slice(0, at), port: Number(values.listen.slice(at + 1)) });
await server.listen({ path: values.socket });
process.stdout.write(`${JSON.stringify({ url, socket: values.socket, pid: process.pid })}\n`);
process.on('SIGTERM', () => { process.stderr.write('test API server: SIGTERM, stopping\n'); void server.close().then(() => process.exit(0)); });
