{
  "targets": [
    {
      "target_name": "routeshift_native",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/link.cc",
        "native/map.cc",
        "native/netlink.cc",
        "native/netns.cc",
        "native/object.cc",
        "native/program.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["<!@(pkg-config --libs libbpf)"]
    }
  ]
}
