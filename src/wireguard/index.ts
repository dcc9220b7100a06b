// Public surface of the WireGuard protocol core.
export * from './constants.js';
export * from './actions.js';
export * from './device.js';
export * from './endpoint.js';
export * from './keypair.js';
export * from './keylog.js';
export { LINGER_MS } from './lingering-keypairs.js';
export * from './messages.js';
export * from './peer.js';
export * from './replay-window.js';
export * from './stats.js';
export * from './tai64n.js';
export * from './transport.js';
export { StaticIdentity, HandshakeState, INITIAL_CHAIN_KEY, INITIAL_HASH } from './noise-handshake.js';
export { CookieChecker, CookieGenerator } from './cookie.js';
