// Internet checksum (RFC 1071), summed 32 bits at a time into a 64-bit accumulator.
#include "common.h"
#include <string.h>

// Returns the running sum in network byte order. Chunks must start at even offsets of the
// checksummed stream (true for every IP/TCP/UDP header and pseudo-header part).
uint64_t csum_add(uint64_t sum, const uint8_t *p, size_t n) {
  uint64_t s = 0;
  while (n >= 32) {
    uint32_t w[8];
    memcpy(w, p, 32);
    s += (uint64_t)w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
    p += 32; n -= 32;
  }
  while (n >= 4) { uint32_t w; memcpy(&w, p, 4); s += w; p += 4; n -= 4; }
  if (n >= 2) { uint16_t w; memcpy(&w, p, 2); s += w; p += 2; n -= 2; }
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (n) s += p[0];
  // Native little-endian words: fold, then swap the 16-bit result into network order.
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  s = ((s & 0xff) << 8) | (s >> 8);
#else
  if (n) s += (uint32_t)p[0] << 8;
#endif
  return sum + s;
}

uint16_t csum_fold(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)sum;
}

// checksum(buf, offset, length, initial) -> 16-bit Internet checksum (inverted), for tests and
// for the rare control packet; TypeScript has its own for per-packet use.
napi_value checksum(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  uint8_t *buf; size_t blen; int32_t off, len, init;
  NEED(arg_bytes(env, argv[0], &buf, &blen, "buf"));
  NEED(arg_int(env, argv[1], &off, "offset"));
  NEED(arg_int(env, argv[2], &len, "length"));
  NEED(arg_int(env, argv[3], &init, "initial"));
  if (off < 0 || len < 0 || (size_t)off + (size_t)len > blen) return throw_range(env, "veil_datapath: checksum range outside buffer");
  return ret_int(env, (uint16_t)~csum_fold(csum_add((uint32_t)init, buf + off, (size_t)len)));
}
