// Known-answer tests for the crypto seam: RFC 7748 (X25519), RFC 7693 / BLAKE2 KAT (BLAKE2s),
// RFC 8439 §2.8.2 (ChaCha20-Poly1305); keyed BLAKE2s-128 and HMAC-BLAKE2s against Python's hashlib.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  X25519PrivateKey, x25519, generatePrivateKey, hash, mac128, hmacBlake2s, kdf,
  aeadSeal, aeadOpen, counterNonce, xaeadSeal, xaeadOpen, clampPrivateKey, setCryptoBackend, cryptoBackend,
  hashInto, kdfInto, aeadSealInto, aeadOpenInto, x25519Into, randomBytes, type CryptoBackend,
} from '../../src/crypto/index.js';
import { blake2s } from '@noble/hashes/blake2.js';
import { readFileSync } from 'node:fs';
import { native } from '../../src/native/addon.js';

const hex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const ascii = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));
/** The addon, or null when it is not built. */
const builtAddon = () => {
  try {
    return native();
  } catch {
    return null;
  }
};
/** This CPU's flags (/proc/cpuinfo): which vector paths must serve. */
const cpuFlags = () => /^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.split(/\s+/) ?? [];

test('X25519 RFC 7748 §6.1 vector', () => {
  const alice = new X25519PrivateKey(hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'));
  const bob = new X25519PrivateKey(hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'));
  assert.equal(toHex(alice.publicKey), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
  assert.equal(toHex(bob.publicKey), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
  assert.equal(toHex(x25519(alice, bob.publicKey)!), shared);
  assert.equal(toHex(x25519(bob, alice.publicKey)!), shared);
});

test('X25519 refuses low-order points and bad sizes', () => {
  const k = generatePrivateKey();
  assert.equal(x25519(k, new Uint8Array(32)), null); // all-zero result
  assert.equal(x25519(k, new Uint8Array(31)), null);
  assert.throws(() => new X25519PrivateKey(new Uint8Array(16)), RangeError);
  const c = clampPrivateKey(new Uint8Array(32).fill(0xff));
  assert.equal(c[0], 0xf8);
  assert.equal(c[31], 0x7f);
});

// Public keys come from a fixed-base comb (native/x25519.c) where node exports OpenSSL's fe64
// field routines: check it against two other derivations, the Montgomery ladder on u = 9 and
// node:crypto's (OpenSSL's Edwards code), on random keys and on scalars at the digit edges.
test('X25519 public keys agree with the ladder on the base point and with node:crypto', (t) => {
  const basePoint = new Uint8Array(32);
  basePoint[0] = 9;
  const edges = [0x00, 0xff, 0x88, 0x77, 0x80, 0x08, 0x0f, 0xf0].map((b) => new Uint8Array(32).fill(b));
  const keys = [...edges, ...Array.from({ length: 300 }, () => randomBytes(32))];
  const initial = cryptoBackend();
  try {
    for (const [i, raw] of keys.entries()) {
      setCryptoBackend(initial);
      const k = new X25519PrivateKey(raw);
      assert.equal(toHex(k.publicKey), toHex(x25519(k, basePoint)!), `key ${i}: ladder on u = 9`);
      if (i % 4 === 0 && setCryptoBackend('node') === 'node') {
        assert.equal(toHex(k.publicKey), toHex(new X25519PrivateKey(raw).publicKey), `key ${i}: node:crypto`);
      }
    }
  } finally {
    setCryptoBackend(initial);
  }
  t.diagnostic(`crypto backend ${initial}`);
});

// Shared secrets, alone or a handshake message's several at once (x25519_many), run on AVX-512
// IFMA vector ladders where the CPU has them (native/x25519-ifma.c: one or two ladders on pairs of
// lanes, three or four a lane each). On such a CPU that path must be the one taken (its load-time
// check passed, and every batch here went through it); on any CPU a batch must agree with
// node:crypto's OpenSSL: RFC 7748 §5.2 and its 1,000-iteration vector, random keys and points
// (some above p, some with the ignored top bit set) in batches of 1 to 4.
test('X25519 batches (IFMA lanes where the CPU has them) agree with OpenSSL', (t) => {
  const addon = builtAddon();
  if (!addon) return t.skip('the native addon is not built');
  const flags = cpuFlags();
  const cpuHasIfma = ['avx512ifma', 'avx512vl', 'avx512dq'].every((f) => flags.includes(f));
  const bits = addon.noiseX25519Backend();
  // The lanes need the batched ladder's fe64 division (bit 4): without node's fe64 routines, no lanes.
  assert.equal(Boolean(bits & 8), cpuHasIfma && Boolean(bits & 4), `backend bits ${bits}, CPU IFMA ${cpuHasIfma}`);
  const batchesBefore = addon.noiseX25519IfmaBatches();
  let batches = 0;
  const many = (keys: Uint8Array[], points: Uint8Array[]): Uint8Array[] => {
    const out = new Uint8Array(32 * keys.length);
    assert.equal(addon.noiseX25519Many(out, Buffer.concat(keys), Buffer.concat(points)), 1);
    batches++;
    return keys.map((_, i) => out.subarray(32 * i, 32 * i + 32));
  };
  const initial = cryptoBackend();
  const openssl = (k: Uint8Array, u: Uint8Array) => {
    setCryptoBackend('node');
    try {
      return toHex(x25519(new X25519PrivateKey(k), u)!);
    } finally {
      setCryptoBackend(initial);
    }
  };
  const rfc = many(
    [hex('a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4'), hex('4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d')],
    [hex('e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c'), hex('e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493')],
  );
  assert.equal(toHex(rfc[0]!), 'c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552');
  assert.equal(toHex(rfc[1]!), '95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957');
  // §5.2 iterated: k, u = X25519(k, u), k; lane 0 iterates, lane 1 a random key and point each time.
  let k = new Uint8Array(32), u = new Uint8Array(32);
  k[0] = u[0] = 9;
  for (let i = 1; i <= 1000; i++) {
    const rk = randomBytes(32), ru = randomBytes(32);
    const [next, other] = many([k, rk], [u, ru]);
    assert.equal(toHex(other!), openssl(rk, ru), `iteration ${i}: the random lane`);
    u = k;
    k = Uint8Array.from(next!);
    if (i === 1) assert.equal(toHex(k), '422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079');
  }
  assert.equal(toHex(k), '684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51');
  for (let round = 0; round < 400; round++) {
    const n = 1 + (round % 4);
    const keys = Array.from({ length: n }, () => randomBytes(32));
    const points = Array.from({ length: n }, () => randomBytes(32));
    if (round % 5 === 0) points[round % n] = Uint8Array.from({ length: 32 }, (_, j) => (j === 0 ? 0xef + (round % 17) : 0xff)); // p + 2..18, top bit set
    const got = many(keys, points);
    for (let i = 0; i < n; i++) assert.equal(toHex(got[i]!), openssl(keys[i]!, points[i]!), `round ${round} lane ${i}`);
  }
  const ifmaBatches = addon.noiseX25519IfmaBatches() - batchesBefore;
  assert.equal(ifmaBatches, bits & 8 ? batches : 0, 'every batch ran on the IFMA lanes exactly when the backend says so');
  t.diagnostic(`backend bits ${bits}; ${ifmaBatches} of ${batches} batches on IFMA lanes`);
});

// Where the CPU has AVX-512VL the native BLAKE2s compresses on vector rows (native/noise-crypto.c):
// it must serve there, and agree with @noble/hashes on every length around block edges, keyed or
// not, and the KDF (all its HMACs) with node:crypto's HMAC-BLAKE2s.
test('native BLAKE2s (AVX-512VL rows where the CPU has them) agrees with @noble/hashes and node:crypto', (t) => {
  const addon = builtAddon();
  if (!addon) return t.skip('the native addon is not built');
  const flags = cpuFlags();
  const cpuHasVl = process.arch === 'x64' && ['avx512f', 'avx512vl'].every((f) => flags.includes(f));
  assert.equal(addon.noiseBlake2sBackend(), cpuHasVl ? 1 : 0, `CPU AVX-512VL ${cpuHasVl}`);
  const empty = new Uint8Array(0);
  for (let n = 0; n <= 260; n++) {
    const input = randomBytes(n);
    const key = randomBytes(1 + (n % 32));
    const out = new Uint8Array(32);
    addon.noiseBlake2s(out, empty, input, empty, empty);
    assert.equal(toHex(out), toHex(blake2s(input)), `BLAKE2s of ${n} bytes`);
    const mac = new Uint8Array(16);
    addon.noiseBlake2s(mac, key, input.subarray(0, n >> 1), input.subarray(n >> 1), empty);
    assert.equal(toHex(mac), toHex(blake2s(input, { key, dkLen: 16 })), `keyed BLAKE2s-128 of ${n} bytes`);
  }
  const initial = cryptoBackend();
  try {
    for (let i = 0; i < 50; i++) {
      const ck = randomBytes(32), input = randomBytes(i % 3 === 0 ? 0 : 32);
      setCryptoBackend('native');
      const mine = toHex(kdfInto(new Uint8Array(96), ck, input));
      setCryptoBackend('node');
      assert.equal(mine, toHex(kdfInto(new Uint8Array(96), ck, input)), 'KDF3');
    }
  } finally {
    setCryptoBackend(initial);
  }
});

test('generated keys agree on the shared secret', () => {
  const a = generatePrivateKey();
  const b = generatePrivateKey();
  assert.deepEqual(x25519(a, b.publicKey), x25519(b, a.publicKey));
  assert.deepEqual(new X25519PrivateKey(a.raw).publicKey, a.publicKey);
});

test('BLAKE2s-256, keyed BLAKE2s, HMAC-BLAKE2s known answers', () => {
  assert.equal(toHex(hash(ascii('abc'))), '508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982');
  assert.equal(toHex(hash(ascii('a'), ascii('bc'))), '508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982');
  // blake2s-kat.txt first keyed entry: key 00..1f, empty input (32-byte output)
  const key32 = Uint8Array.from({ length: 32 }, (_, i) => i);
  assert.equal(toHex(blake2s(new Uint8Array(0), { key: key32 })), '48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49');
  const key16 = Uint8Array.from({ length: 16 }, (_, i) => i);
  assert.equal(toHex(mac128(key16, ascii('hello wireguard'))), 'f79336d9851d215e27a23c66eae32bed');
  assert.equal(toHex(hmacBlake2s(ascii('key'), ascii('The quick brown fox'))), '8717096fc5e7ac53d11d990acd4380c9ddd7bd8da5d8b5bc29855e6c98a866a4');
});

test('KDF outputs chain as Noise HKDF says', () => {
  const ck = hash(ascii('ck'));
  const input = ascii('input');
  const [t1, t2, t3] = kdf(3, ck, input);
  const prk = hmacBlake2s(ck, input);
  assert.deepEqual(t1, hmacBlake2s(prk, Uint8Array.of(1)));
  assert.deepEqual(t2, hmacBlake2s(prk, t1!, Uint8Array.of(2)));
  assert.deepEqual(t3, hmacBlake2s(prk, t2!, Uint8Array.of(3)));
  assert.deepEqual(kdf(1, ck, input)[0], t1);
});

test('ChaCha20-Poly1305 RFC 8439 §2.8.2 vector, tamper detection', () => {
  const key = Uint8Array.from({ length: 32 }, (_, i) => 0x80 + i);
  const nonce = hex('070000004041424344454647');
  const aad = hex('50515253c0c1c2c3c4c5c6c7');
  const pt = ascii("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.");
  const sealed = aeadSeal(key, nonce, pt, aad);
  assert.equal(toHex(sealed.subarray(0, 16)), 'd31a8d34648e60db7b86afbc53ef7ec2');
  assert.equal(toHex(sealed.subarray(sealed.length - 16)), '1ae10b594f09e26a7e902ecbd0600691');
  assert.deepEqual(aeadOpen(key, nonce, sealed, aad), pt);
  sealed[3]! ^= 1;
  assert.equal(aeadOpen(key, nonce, sealed, aad), null);
  assert.equal(aeadOpen(key, nonce, new Uint8Array(5)), null);
  const empty = aeadSeal(key, nonce, new Uint8Array(0));
  assert.equal(empty.length, 16);
  assert.deepEqual(aeadOpen(key, nonce, empty), new Uint8Array(0));
});

test('transport nonce is 4 zero bytes then the little-endian counter', () => {
  assert.equal(toHex(counterNonce(0x0102030405)), '000000000504030201000000');
  assert.equal(toHex(counterNonce(2 ** 53 - 1)), '00000000ffffffffffff1f00');
});

test('XChaCha20-Poly1305 round trip and tamper detection', () => {
  const key = hash(ascii('k'));
  const nonce = new Uint8Array(24).fill(7);
  const aad = ascii('mac1');
  const sealed = xaeadSeal(key, nonce, ascii('cookie'), aad);
  assert.equal(sealed.length, 6 + 16);
  assert.deepEqual(xaeadOpen(key, nonce, sealed, aad), ascii('cookie'));
  assert.equal(xaeadOpen(key, nonce, sealed, ascii('other')), null);
});

// Every test above runs on the backend chosen at load (native when the addon is built). This one
// runs a fixed workload of every primitive on both backends and requires identical bytes.
test('native and node:crypto backends give the same bytes', (t) => {
  const work = (kind: CryptoBackend): string[] => {
    assert.equal(setCryptoBackend(kind), kind);
    const out: string[] = [];
    const seedKey = new X25519PrivateKey(hash(ascii('static')));
    for (let i = 0; i < 40; i++) {
      const a = hash(ascii(`a${i}`));
      const long = new Uint8Array(i * 7).fill(i); // 0..273 bytes: several BLAKE2s blocks, block edges
      out.push(toHex(hash(a, long, ascii('c'))), toHex(hashInto(new Uint8Array(32), long)));
      out.push(toHex(mac128(a.subarray(0, 16 + (i % 17)), long)));
      out.push(toHex(kdfInto(new Uint8Array(32 * (1 + (i % 3))), a, long)));
      const nonce = counterNonce(i);
      const sealed = aeadSealInto(new Uint8Array(long.length + 16), a, nonce, long, ascii('aad'));
      out.push(toHex(sealed));
      const opened = new Uint8Array(long.length);
      assert.ok(aeadOpenInto(opened, a, nonce, sealed, ascii('aad')));
      assert.deepEqual(opened, long);
      if (long.length) {
        sealed[0]! ^= 1;
        assert.equal(aeadOpenInto(opened, a, nonce, sealed, ascii('aad')), false);
      }
      const xnonce = hash(ascii(`n${i}`)).subarray(0, 24);
      const xsealed = xaeadSeal(a, xnonce, long, ascii('mac1'));
      out.push(toHex(xsealed));
      assert.deepEqual(xaeadOpen(a, xnonce, xsealed, ascii('mac1')), long);
      assert.equal(xaeadOpen(a, xnonce, xsealed, ascii('mac2')), null);
      const k = new X25519PrivateKey(a);
      const shared = new Uint8Array(32);
      assert.ok(x25519Into(shared, k, seedKey.publicKey));
      out.push(toHex(k.publicKey), toHex(shared));
    }
    const g = generatePrivateKey();
    assert.deepEqual(new X25519PrivateKey(g.raw).publicKey, g.publicKey);
    assert.equal(x25519Into(new Uint8Array(32), g, new Uint8Array(32)), false, 'low-order point refused');
    return out;
  };
  const initial = cryptoBackend();
  try {
    if (setCryptoBackend('native') !== 'native') return t.skip('the native addon is not built');
    const native = work('native');
    const node = work('node');
    assert.equal(native.length, node.length);
    for (let i = 0; i < native.length; i++) assert.equal(native[i], node[i], `output ${i}`);
    assert.ok(randomBytes(4).length === 4);
  } finally {
    setCryptoBackend(initial);
  }
});
