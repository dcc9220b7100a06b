// The bearer token of the agent API on the network: 32 random bytes in a registry Secret, so only
// who may read the cluster's secrets (its admins) can call the agents. `veil install` creates it;
// agents read it; the CLI sends it. Compared in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Registry, RegistryObject } from '../control/registry.js';
import type { SecretSource } from './agent-inputs.js';
import { secretValue } from '../control/secrets.js';
import { VeilError } from '../util/errors.js';

export const API_TOKEN_SECRET = 'veil-agent-api-token';
const TOKEN_KEY = 'token';
/** How long an agent trusts the token it read before reading the Secret again (a rotation lands within it). */
const TOKEN_CACHE_MS = 10_000;

/** Creates the token Secret if it is absent; returns whether it made one. */
export async function ensureApiToken(reg: Registry): Promise<boolean> {
  if (await reg.get('Secret', API_TOKEN_SECRET)) return false;
  const token = randomBytes(32).toString('base64url');
  try {
    await reg.create({
      kind: 'Secret', metadata: { name: API_TOKEN_SECRET, creationTimestamp: new Date().toISOString() }, type: 'Opaque',
      data: { [TOKEN_KEY]: Buffer.from(token).toString('base64') },
    });
    return true;
  } catch (e) {
    if (e instanceof VeilError && e.code === 'ALREADY_EXISTS') return false; // another install made it meanwhile
    throw e;
  }
}

/** The token, or undefined when the Secret (or its key) does not exist. */
export async function readApiToken(reg: Registry): Promise<string | undefined> {
  return apiTokenOf(await reg.get('Secret', API_TOKEN_SECRET));
}

/** The token in the token Secret, if it holds one. */
export function apiTokenOf(secret: RegistryObject | undefined): string | undefined {
  const value = secret && secretValue(secret, TOKEN_KEY)?.toString('utf8');
  return value || undefined;
}

/**
 * Whether an Authorization header carries the expected bearer token. Both sides are hashed first,
 * so the comparison is constant-time whatever the lengths.
 */
export function bearerMatches(header: string | undefined, expected: string): boolean {
  const m = /^Bearer (\S+)$/.exec(header ?? '');
  const digest = (s: string) => createHash('sha256').update(s).digest();
  const presented = digest(m ? m[1] : '');
  return timingSafeEqual(presented, digest(expected)) && m !== null && expected.length > 0;
}

/** The agent's view of the token: read from the registry or the mounted Secret, kept for a few seconds. */
export class ApiTokenSource {
  private cached?: { token: string | undefined; at: number };

  constructor(private readonly secrets: SecretSource, private readonly now: () => number = Date.now) {}

  async token(): Promise<string | undefined> {
    if (!this.cached || this.now() - this.cached.at > TOKEN_CACHE_MS) this.cached = { token: apiTokenOf(await this.secrets.get(API_TOKEN_SECRET)), at: this.now() };
    return this.cached.token;
  }
}
