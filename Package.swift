// swift-tools-version:6.0
import PackageDescription

// One module per concern; lower layers never import higher ones (see docs/ARCHITECTURE.md).
let package = Package(
  name: "SwiftVMM",
  platforms: [.macOS(.v13)],
  products: [
    .executable(name: "swiftvmm", targets: ["swiftvmm"]),
    .executable(name: "difftest", targets: ["difftest"]),
    // SwiftVMM as a library: configure, start, console, pause, resume, stop, counters.
    .library(name: "SwiftVMMKit", targets: ["SwiftVMMKit"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
    // `swift package generate-documentation --target SwiftVMMKit` (build-time plugin only).
    .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
  ],
  targets: [
    .target(name: "X86", swiftSettings: [.swiftLanguageMode(.v5)]),
    .target(
      name: "Memory", dependencies: ["X86"], swiftSettings: [.swiftLanguageMode(.v5)]),
    // Devices and VMM carry every exit (bus lookup, UART, interrupt lines): without
    // exclusivity checks the 16550 console spent about 5% less CPU (docs/BENCH-IO.md).
    .target(
      name: "Devices",
      dependencies: [
        "X86", "Memory", "CHostIO", .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: [.swiftLanguageMode(.v5), .unsafeFlags(["-enforce-exclusivity=unchecked"])]),
    .target(
      name: "Boot", dependencies: ["X86", "Memory"], swiftSettings: [.swiftLanguageMode(.v5)]),
    .target(
      name: "Engine", dependencies: ["X86", "Memory"], swiftSettings: [.swiftLanguageMode(.v5)]),
    .target(name: "CKVM"),
    // The one host-syscall shim: epoll/timerfd/eventfd, fallocate, getrandom.
    .target(name: "CHostIO"),
    // libslirp (user-mode networking) and TAP; needs Debian's libslirp-dev.
    .target(name: "CNetwork", linkerSettings: [.linkedLibrary("slirp")]),
    .target(name: "CX86FP"),
    .target(
      name: "KVM", dependencies: ["CKVM", "Engine", "X86", "Memory"],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    .target(
      name: "Interpreter", dependencies: ["Engine", "X86", "Memory", "CX86FP", "Translator"],
      swiftSettings: [
        .swiftLanguageMode(.v5), .unsafeFlags(["-enforce-exclusivity=unchecked"]),
      ]),
    // Binary translation: host-code generation for the translator engine.
    .target(
      name: "Translator", dependencies: ["Engine", "X86", "Memory"],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    .target(
      name: "VMM",
      dependencies: [
        "X86", "Memory", "Devices", "Boot", "Engine", "KVM", "Interpreter", "CHostIO", "CNetwork",
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: [.swiftLanguageMode(.v5), .unsafeFlags(["-enforce-exclusivity=unchecked"])]),
    // The Firecracker-compatible HTTP API on a Unix socket (SwiftNIO).
    .target(
      name: "APIServer",
      dependencies: [
        "VMM", .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
      ],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    .target(
      name: "SwiftVMMKit",
      dependencies: [
        "VMM", "APIServer", "Boot", "Engine", .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    // The library's example: boots the demo guest and prints what it says.
    .executableTarget(
      name: "example-boot", dependencies: ["SwiftVMMKit"], path: "Examples/BootDemo",
      swiftSettings: [.swiftLanguageMode(.v5)]),
    .executableTarget(
      name: "swiftvmm",
      // Every module its sources import, no more.
      dependencies: [
        "VMM", "Engine", "Boot", "Memory", "SwiftVMMKit", "BenchStats",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    // Benchmark arithmetic (medians, spreads, per-unit costs) for `swiftvmm bench`.
    .target(name: "BenchStats", swiftSettings: [.swiftLanguageMode(.v5)]),
    .testTarget(
      name: "BenchStatsTests", dependencies: ["BenchStats"],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    // Differential testing of the interpreter against the host CPU.
    .target(name: "CNativeExec"),
    .target(
      name: "DiffTest", dependencies: ["CNativeExec", "Interpreter", "Engine", "Memory", "X86"],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    .executableTarget(
      name: "difftest",
      dependencies: [
        "DiffTest", .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    .testTarget(
      name: "DiffTestTests", dependencies: ["DiffTest", "CNativeExec"],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    .target(
      name: "TestSupport", path: "Tests/TestSupport", swiftSettings: [.swiftLanguageMode(.v5)]),
    .testTarget(
      name: "TranslatorTests", dependencies: ["Translator", "VMM", "TestSupport"],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    .testTarget(
      name: "MemoryTests", dependencies: ["Memory", "X86"],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    .testTarget(
      name: "DevicesTests", dependencies: ["Devices", "Memory", "TestSupport", "X86"],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    .testTarget(
      name: "BootTests", dependencies: ["Boot", "TestSupport", "Memory", "X86"],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    .testTarget(
      name: "KVMTests", dependencies: ["KVM", "TestSupport", "Engine", "Memory", "X86"],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    .testTarget(
      name: "InterpreterTests",
      dependencies: ["Interpreter", "Translator", "TestSupport", "Engine", "Memory", "X86"],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    .testTarget(
      name: "VMMTests",
      dependencies: [
        "VMM", "TestSupport", "Engine", "Interpreter", "KVM", "Memory", "Devices", "Boot", "X86",
      ],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    .testTarget(
      name: "SwiftVMMKitTests", dependencies: ["SwiftVMMKit", "TestSupport"],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    .testTarget(
      name: "APIServerTests",
      dependencies: [
        "APIServer", "VMM", "TestSupport", .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOCore", package: "swift-nio"),
      ],
      swiftSettings: [.swiftLanguageMode(.v5)]),
    // Debian boots: minutes each, release builds only (scripts/test runs them; --fast does not).
    .testTarget(
      name: "LinuxTests",
      dependencies: [
        "VMM", "TestSupport", "Engine", "Interpreter", "Boot", "Devices", "Memory", "X86",
      ],
      swiftSettings: [.swiftLanguageMode(.v5)]),
  ]
)
