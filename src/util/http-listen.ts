// Starting and stopping an HTTP(S) server on an address, the same for every listener of the agent.
import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';

type AnyServer = HttpServer | HttpsServer;

/** Listens on host:port; rejects (e.g. EADDRINUSE) instead of emitting an error later. */
export function listenOn(server: AnyServer, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(); });
  });
}

/** Closes the server and its open connections (a keep-alive client must not hold a stop). */
export async function closeServer(server: AnyServer | undefined): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}
