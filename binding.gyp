{
  "targets": [
    {
      "target_name": "veil_datapath",
      "sources": [
        "native/module.c",
        "native/checksum.c",
        "native/batch.c",
        "native/thread-priority.c",
        "native/tun.c",
        "native/udp.c",
        "native/raw-ip.c",
        "native/aead.c",
        "native/crypto-pool.c",
        "native/noise-crypto.c",
        "native/noise-handshake.c",
        "native/x25519.c",
        "native/x25519-ifma.c",
        "native/fdpass.c",
        "native/file-replacer.c",
        "native/wake-fd.c",
        "native/malloc-trim.c",
        "native/malloc-stats.c",
        "native/route-changes.c",
        "native/route-steer.c"
      ],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
    }
  ]
}
