{
  "targets": [
    {
      "target_name": "pcieoe_native",
      "sources": ["src/addon.cc", "src/common.cc", "src/fds.cc", "src/seals.cc", "src/eventfd.cc", "src/timerfd.cc", "src/stream.cc", "src/dgram.cc", "src/crc32.cc", "src/poll.cc", "src/memif-forward.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
