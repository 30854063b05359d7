import Foundation
import XCTest

@testable import Boot

final class InitramfsTests: XCTestCase {
  var tmp: URL!

  override func setUpWithError() throws {
    tmp = FileManager.default.temporaryDirectory.appendingPathComponent(
      "svinitramfs-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: tmp)
  }

  func testArchiveRoundTripAndAlignment() throws {
    var exe = CPIOEntry("bin/tool", .file([1, 2, 3, 4, 5]), permissions: 0o755)
    exe.mtime = 1234
    let entries = [
      CPIOEntry("dev/console", .characterDevice(major: 5, minor: 1)),
      exe,
      CPIOEntry("bin/sh", .symlink("tool")),
      CPIOEntry("etc", .directory, permissions: 0o700),
      CPIOEntry("etc/empty", .file([])),
      CPIOEntry("dev/sda", .blockDevice(major: 8, minor: 0), permissions: 0o660),
    ]
    let bytes = CPIO.archive(entries)
    XCTAssertEqual(bytes.count % 4, 0)
    XCTAssertEqual(Array(bytes.prefix(6)), Array("070701".utf8))
    let back = try CPIO.parse(bytes)
    // Parent directories are emitted before their children.
    XCTAssertEqual(
      back.map(\.path),
      ["dev", "dev/console", "bin", "bin/tool", "bin/sh", "etc", "etc/empty", "dev/sda"])
    XCTAssertEqual(back[1].kind, .characterDevice(major: 5, minor: 1))
    XCTAssertEqual(back[3], exe)
    XCTAssertEqual(back[4].kind, .symlink("tool"))
    XCTAssertEqual(back[5].permissions, 0o700)
    XCTAssertEqual(back[6].kind, .file([]))
    XCTAssertEqual(back[7].kind, .blockDevice(major: 8, minor: 0))
    XCTAssertTrue(back.allSatisfy { $0.uid == 0 && $0.gid == 0 })
    // The trailer ends the archive, and every header starts 4-byte aligned.
    let text = String(decoding: bytes, as: UTF8.self)
    XCTAssertTrue(text.contains("TRAILER!!!"))
    var o = 0
    var headers = 0
    while let r = bytes[o...].firstRange(of: Array("070701".utf8)) {
      XCTAssertEqual(r.lowerBound % 4, 0)
      headers += 1
      o = r.upperBound
    }
    XCTAssertEqual(headers, back.count + 1)
  }

  func testParseRejectsGarbage() {
    XCTAssertThrowsError(try CPIO.parse(Array("hello".utf8)))
    let good = CPIO.archive([CPIOEntry("a", .file([1, 2, 3]))])
    for n in stride(from: 0, to: good.count - 1, by: 7) {
      XCTAssertThrowsError(try CPIO.parse(Array(good.prefix(n))))
    }
  }

  func testPacksDirectoryTree() throws {
    let fm = FileManager.default
    try fm.createDirectory(
      at: tmp.appendingPathComponent("root/sub"), withIntermediateDirectories: true)
    try Data("hello".utf8).write(to: tmp.appendingPathComponent("root/sub/file"))
    try Data("#!/bin/sh\n".utf8).write(to: tmp.appendingPathComponent("root/init"))
    try fm.setAttributes(
      [.posixPermissions: 0o755], ofItemAtPath: tmp.appendingPathComponent("root/init").path)
    try fm.createSymbolicLink(
      atPath: tmp.appendingPathComponent("root/link").path, withDestinationPath: "sub/file")
    try fm.createSymbolicLink(
      atPath: tmp.appendingPathComponent("root/abs").path, withDestinationPath: "/sub")
    try fm.createSymbolicLink(
      atPath: tmp.appendingPathComponent("root/outside").path, withDestinationPath: "/proc/self")
    let entries = try CPIO.entries(fromDirectory: tmp.appendingPathComponent("root").path)
    let byPath = Dictionary(uniqueKeysWithValues: entries.map { ($0.path, $0) })
    XCTAssertEqual(byPath["sub/file"]?.kind, .file(Array("hello".utf8)))
    XCTAssertEqual(byPath["init"]?.permissions, 0o755)
    XCTAssertEqual(byPath["sub"]?.kind, .directory)
    XCTAssertEqual(byPath["link"]?.kind, .symlink("sub/file"))
    XCTAssertEqual(byPath["abs"]?.kind, .symlink("/sub"))
    let back = try CPIO.parse(CPIO.archive(entries))
    XCTAssertEqual(Set(back.map(\.path)), Set(entries.map(\.path)))
  }

  func testDetectsSymlinkLoops() throws {
    let fm = FileManager.default
    let root = tmp.appendingPathComponent("loop")
    try fm.createDirectory(at: root.appendingPathComponent("d"), withIntermediateDirectories: true)
    try fm.createSymbolicLink(
      atPath: root.appendingPathComponent("a").path, withDestinationPath: "b")
    try fm.createSymbolicLink(
      atPath: root.appendingPathComponent("b").path, withDestinationPath: "/d/../a")
    XCTAssertThrowsError(try CPIO.entries(fromDirectory: root.path)) { e in
      guard case InitramfsError.symlinkLoop = e else { return XCTFail("\(e)") }
      XCTAssertTrue("\(e)".contains("loop"))
    }
    // In-memory entries: a link to itself, and a directory link cycle through a path.
    XCTAssertThrowsError(try CPIO.checkSymlinks([CPIOEntry("self", .symlink("self"))]))
    XCTAssertThrowsError(
      try CPIO.checkSymlinks([CPIOEntry("x", .symlink("y/z")), CPIOEntry("y", .symlink("x"))]))
    // Long but finite chains and links through directories are fine.
    var chain = (0..<30).map { CPIOEntry("l\($0)", .symlink("l\($0 + 1)")) }
    chain.append(CPIOEntry("l30", .file([])))
    XCTAssertNoThrow(try CPIO.checkSymlinks(chain))
    XCTAssertNoThrow(
      try CPIO.checkSymlinks([
        CPIOEntry("bin", .symlink("usr/bin")), CPIOEntry("sh", .symlink("/bin/busybox")),
      ]))
  }

  func testMissingAndUnreadableInputs() throws {
    XCTAssertThrowsError(try CPIO.entries(fromDirectory: tmp.appendingPathComponent("nope").path)) {
      e in
      guard case InitramfsError.unreadable = e else { return XCTFail("\(e)") }
    }
    XCTAssertThrowsError(
      try StandardInitramfs.entries(
        busybox: tmp.appendingPathComponent("busybox").path, initScript: "")
    ) { e in
      guard case InitramfsError.missing = e else { return XCTFail("\(e)") }
      XCTAssertTrue("\(e)".contains("busybox"))
    }
    let dir = tmp.appendingPathComponent("locked")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    try Data("x".utf8).write(to: dir.appendingPathComponent("secret"))
    chmod(dir.appendingPathComponent("secret").path, 0)
    if geteuid() == 0 {
      print("skip: unreadable-file case needs a non-root user (root reads mode-000 files)")
    } else {
      XCTAssertThrowsError(try CPIO.entries(fromDirectory: dir.path)) { e in
        XCTAssertTrue("\(e)".contains("secret"), "\(e)")
      }
    }
  }

  func testStandardInitramfsLayout() throws {
    let bb = tmp.appendingPathComponent("busybox")
    try Data([0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0]).write(to: bb)
    let modRoot = tmp.appendingPathComponent("lib/modules/9.9.9")
    try FileManager.default.createDirectory(
      at: modRoot.appendingPathComponent("kernel/drivers/virtio"), withIntermediateDirectories: true
    )
    let ko = modRoot.appendingPathComponent("kernel/drivers/virtio/virtio.ko")
    try Data([0] + Array("depends=virtio_ring".utf8) + [0]).write(to: ko)
    XCTAssertEqual(
      StandardInitramfs.dependencies(ofModule: try [UInt8](Data(contentsOf: ko))), ["virtio_ring"])
    let entries = try StandardInitramfs.entries(
      busybox: bb.path, initScript: "#!/bin/sh\necho hi\n", modules: [ko.path],
      modulesRoot: modRoot.path)
    let back = try CPIO.parse(CPIO.archive(entries))
    let byPath = Dictionary(back.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
    XCTAssertEqual(byPath["init"]?.permissions, 0o755)
    XCTAssertEqual(byPath["bin/busybox"]?.permissions, 0o755)
    XCTAssertEqual(byPath["bin/sh"]?.kind, .symlink("busybox"))
    XCTAssertEqual(byPath["dev/console"]?.kind, .characterDevice(major: 5, minor: 1))
    XCTAssertNotNil(byPath["lib/modules/9.9.9/kernel/drivers/virtio/virtio.ko"])
    XCTAssertEqual(
      byPath[StandardInitramfs.moduleListPath]?.kind,
      .file(Array("/lib/modules/9.9.9/kernel/drivers/virtio/virtio.ko\n".utf8)))
  }

  func testRealGuestModulesInDependencyOrder() throws {
    guard let g = LinuxGuestImages.unpacked(in: LinuxGuestImages.defaultCacheDirectory) else {
      throw XCTSkip(
        "Debian guest not in \(LinuxGuestImages.defaultCacheDirectory); run `swiftvmm guest fetch-linux`"
      )
    }
    let mods = g.virtioModules().map { ($0 as NSString).lastPathComponent }
    print("virtio modules in load order: \(mods)")
    for m in ["virtio.ko", "virtio_ring.ko", "virtio_pci.ko", "virtio_blk.ko", "virtio_net.ko"] {
      XCTAssertTrue(mods.contains(m), m)
    }
    XCTAssertLessThan(mods.firstIndex(of: "virtio_ring.ko")!, mods.firstIndex(of: "virtio.ko")!)
    XCTAssertLessThan(
      mods.firstIndex(of: "net_failover.ko")!, mods.firstIndex(of: "virtio_net.ko")!)
    let image = try StandardInitramfs.build(
      guest: g, initScript: StandardInitramfs.initScript(commands: "echo hi"))
    XCTAssertEqual(Array(image.prefix(2)), [0x1F, 0x8B])
  }

  // MARK: gzip

  func testCRC32() {
    XCTAssertEqual(Gzip.crc32(Array("123456789".utf8)), 0xCBF4_3926)
    XCTAssertEqual(Gzip.crc32([]), 0)
  }

  func testGzipRoundTripThroughSystemGunzip() throws {
    guard
      FileManager.default.isExecutableFile(atPath: "/usr/bin/gzip")
        || FileManager.default.isExecutableFile(atPath: "/bin/gzip")
    else {
      throw XCTSkip("gzip is not installed; cannot cross-check the deflate output")
    }
    var rng = SystemRandomNumberGenerator()
    let random = (0..<70000).map { _ in UInt8.random(in: 0...255, using: &rng) }
    let text = Array(
      String(repeating: "the quick brown fox jumps over the lazy dog ", count: 3000).utf8)
    let runs = [UInt8](repeating: 7, count: 100_000) + Array(0..<255)
    for data in [[], [42], random, text, runs, random + text] {
      for level in [Gzip.Level.stored, .fixedHuffman] {
        let gz = Gzip.compress(data, level: level)
        let f = tmp.appendingPathComponent("t.gz")
        try Data(gz).write(to: f)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "gzip -dc '\(f.path)'"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let back = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "gzip rejected level \(level), \(data.count) bytes")
        XCTAssertTrue([UInt8](back) == data, "level \(level), \(data.count) bytes")
        if level == .fixedHuffman && data.count == text.count {
          XCTAssertLessThan(gz.count, data.count / 10)
        }
      }
    }
  }

  // MARK: LZ4

  func testLZ4BlockAndLegacyStream() throws {
    // "abc" then a 6-byte overlapping match at offset 3, then a final literal "x".
    let block: [UInt8] = [0x32, 0x61, 0x62, 0x63, 0x03, 0x00, 0x10, 0x78]
    var stream: [UInt8] = [0x02, 0x21, 0x4C, 0x18, UInt8(block.count), 0, 0, 0] + block
    XCTAssertEqual(try LZ4.decompressLegacy(stream[...]), Array("abcabcabcx".utf8))
    XCTAssertEqual(try LZ4.decompressLegacy(stream[...], expectedSize: 10).count, 10)
    XCTAssertThrowsError(try LZ4.decompressLegacy(stream[...], expectedSize: 11))
    // Truncations and corruptions throw rather than crash.
    XCTAssertEqual(try LZ4.decompressLegacy(stream.prefix(4)), [], "magic alone is an empty stream")
    for n in [0, 1, 2, 3] + Array(5..<stream.count) {
      XCTAssertThrowsError(try LZ4.decompressLegacy(stream.prefix(n)), "prefix \(n)")
    }
    stream[12] = 0x09  // offset 9 > output so far
    XCTAssertThrowsError(try LZ4.decompressLegacy(stream[...]))
  }

  func testLZ4AgainstSystemTool() throws {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/lz4") else {
      throw XCTSkip("lz4 is not installed; cannot produce a legacy stream to cross-check")
    }
    let data =
      Array(String(repeating: "SwiftVMM boots Linux. ", count: 500_000).utf8)
      + (0..<255).map { UInt8($0) }
    let src = tmp.appendingPathComponent("in")
    try Data(data).write(to: src)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/lz4")
    p.arguments = ["-l", "-9", "-q", "-f", src.path, src.path + ".lz4"]
    try p.run()
    p.waitUntilExit()
    XCTAssertEqual(p.terminationStatus, 0)
    let lz = try [UInt8](Data(contentsOf: URL(fileURLWithPath: src.path + ".lz4")))
    XCTAssertTrue(try LZ4.decompressLegacy(lz[...], expectedSize: data.count) == data)
  }
}
