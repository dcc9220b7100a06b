// Secrets in the key log format of Wireshark's WireGuard dissector (preference wg.keylog_file):
// one `NAME = <base64 of 32 bytes>` per line, NAME one of LOCAL_STATIC_PRIVATE_KEY,
// REMOTE_STATIC_PUBLIC_KEY, LOCAL_EPHEMERAL_PRIVATE_KEY, PRESHARED_KEY. A PRESHARED_KEY line
// belongs to the session of the LOCAL_EPHEMERAL_PRIVATE_KEY line before it, so order matters.

export interface HandshakeSecrets {
  localStaticPrivateKey: Uint8Array;
  remoteStaticPublicKey: Uint8Array;
  localEphemeralPrivateKey: Uint8Array;
  presharedKey: Uint8Array;
}

const b64 = (k: Uint8Array) => Buffer.from(k).toString('base64');

/** The key log lines for one handshake (each ends with a newline), ready to append to the file. */
export function keylogLines(s: HandshakeSecrets): string {
  return (
    `LOCAL_STATIC_PRIVATE_KEY = ${b64(s.localStaticPrivateKey)}\n` +
    `REMOTE_STATIC_PUBLIC_KEY = ${b64(s.remoteStaticPublicKey)}\n` +
    `LOCAL_EPHEMERAL_PRIVATE_KEY = ${b64(s.localEphemeralPrivateKey)}\n` +
    `PRESHARED_KEY = ${b64(s.presharedKey)}\n`
  );
}
