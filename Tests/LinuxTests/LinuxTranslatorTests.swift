import Boot
import Foundation
import TestSupport
import XCTest

/// The Debian guest on the translator (`swiftvmm linux --engine translator`, as a user
/// runs it), one boot for every check because boots are expensive: two vCPUs online,
/// md5sums run at once on both agree with the host's, a virtio-blk write read back after
/// dropping caches and found on the host image, and a download over `--net user`.
/// The MMU modes on the translator are in LinuxMMUModeTests.
final class LinuxTranslatorTests: XCTestCase {
  func testBusyboxDiskNetworkAndTwoCPUs() throws {
    let guest = try requireLinuxGuestAndBinary()
    let dir = NSTemporaryDirectory() + "swiftvmm-translator-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    let vda = dir + "/vda.img"
    FileManager.default.createFile(atPath: vda, contents: nil)
    try FileHandle(forWritingAtPath: vda)!.truncate(atOffset: 8 << 20)
    var rng = SystemRandomNumberGenerator()
    let blob = (0..<(128 << 10)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    FileManager.default.createFile(atPath: dir + "/blob", contents: Data(blob))
    let blobMD5 = try LinuxNetworkTests.md5(dir + "/blob", busybox: guest.busybox)
    // 4 MiB of a known pattern; the host makes the same bytes for its own digest.
    let size = 4 << 20
    let generate = "yes swiftvmm-translator | head -c \(size)"
    _ = try GuestImages.run(
      "/bin/sh", ["-c", "yes swiftvmm-translator 2>/dev/null | head -c \(size) > \(dir)/pattern"],
      timeout: 60)
    let patternMD5 = try LinuxNetworkTests.md5(dir + "/pattern", busybox: guest.busybox)

    let httpPort = try freePort()
    let httpd = Process()
    httpd.executableURL = URL(fileURLWithPath: guest.busybox)
    httpd.arguments = ["httpd", "-f", "-p", "127.0.0.1:\(httpPort)", "-h", dir]
    try httpd.run()
    defer { httpd.terminate() }

    let commands = """
      echo nproc=$(nproc)
      \(generate) > /f
      md5sum /f > /r0
      for i in 1 2; do md5sum /f > /r$i & done; wait
      for i in 0 1 2; do echo digest$i=$(cut -d' ' -f1 /r$i); done
      dd if=/f of=/dev/vda bs=4096 conv=fsync 2>/dev/null
      echo 3 > /proc/sys/vm/drop_caches
      echo vda-md5=$(dd if=/dev/vda bs=4096 count=\(size / 4096) 2>/dev/null | md5sum)
      ip link set eth0 up
      busybox udhcpc -i eth0 -n -q -s /bin/true 2>&1 | grep -o 'lease of [0-9.]* obtained'
      ip addr add 10.0.2.15/24 dev eth0
      ip route add default via 10.0.2.2
      echo http-md5=$(wget -q -O - http://10.0.2.2:\(httpPort)/blob | md5sum)
      """
    let p = Process()
    p.executableURL = URL(fileURLWithPath: GuestImages.swiftvmmBinary)
    p.arguments = [
      "linux", "--engine", "translator", "--cpus", "2", "--disk", vda, "--net", "user",
      "--stats", dir + "/stats.json", "--timeout", "900", "--run", commands,
    ]
    let output = Pipe()
    p.standardOutput = output
    p.standardError = output
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let out = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    let tail = String(out.suffix(3000))
    XCTAssertEqual(p.terminationStatus, 0, "did not power off:\n\(tail)")
    XCTAssertTrue(out.contains("nproc=2"), tail)
    XCTAssertTrue(out.contains("smp: Brought up 1 node, 2 CPUs"), tail)
    XCTAssertEqual(patternMD5.count, 32)
    for i in 0...2 {
      XCTAssertTrue(out.contains("digest\(i)=\(patternMD5)"), "md5sum \(i) differs:\n\(tail)")
    }
    XCTAssertTrue(out.contains("vda-md5=\(patternMD5)"), "virtio-blk read-back differs:\n\(tail)")
    let image = try Data(contentsOf: URL(fileURLWithPath: vda)).prefix(size)
    try image.write(to: URL(fileURLWithPath: dir + "/written"))
    XCTAssertEqual(
      try LinuxNetworkTests.md5(dir + "/written", busybox: guest.busybox), patternMD5,
      "the host image differs from what the guest wrote")
    XCTAssertTrue(out.contains("lease of 10.0.2.15 obtained"), "no DHCP lease:\n\(tail)")
    XCTAssertTrue(out.contains("http-md5=\(blobMD5)"), "download differs:\n\(tail)")
    // The translator ran the boot, not only the interpreter under it, and both vCPUs worked.
    let stats = try Data(contentsOf: URL(fileURLWithPath: dir + "/stats.json"))
    let doc = try XCTUnwrap(JSONSerialization.jsonObject(with: stats) as? [String: Any])
    let machine = try XCTUnwrap(doc["machine"] as? [String: Any])
    XCTAssertEqual(machine["engine_name"] as? String, "translator")
    let counters = try XCTUnwrap(doc["counters"] as? [String: NSNumber])
    XCTAssertGreaterThan(counters["translator.blocks_run"]?.uint64Value ?? 0, 100_000)
    XCTAssertGreaterThan(counters["cpu1.instructions"]?.uint64Value ?? 0, 1_000_000)
  }
}
