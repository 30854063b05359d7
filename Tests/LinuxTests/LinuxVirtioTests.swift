import Boot
import Devices
import Foundation
import TestSupport
import XCTest

/// One Debian boot (`swiftvmm linux`, as a user runs it) with two virtio
/// disks, virtio-rng and hvc0 as the console. The guest writes data to vda,
/// syncs, makes an ext2 file system with busybox mke2fs, tries to write the
/// read-only vdb, and the test SIGKILLs the VMM as soon as the guest says it
/// synced: whatever the guest synced must already be in the host images.
final class LinuxVirtioTests: XCTestCase {
  static let rawOffset = 12 << 20  // past the 8 MiB file system
  static let rawLength = 256 << 10

  func testDisksConsoleAndEntropyUnderDebian() throws {
    _ = try requireLinuxGuestAndBinary()
    let dir = NSTemporaryDirectory() + "swiftvmm-linux-virtio-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    let vda = dir + "/vda.img"
    let vdb = dir + "/vdb.img"
    FileManager.default.createFile(atPath: vda, contents: nil)
    try FileHandle(forWritingAtPath: vda)!.truncate(atOffset: 16 << 20)
    FileManager.default.createFile(atPath: vdb, contents: Data(repeating: 0xA5, count: 1 << 20))

    let blocks = Self.rawLength / 4096
    let commands = """
      ls /dev/vda /dev/vdb /dev/hvc0 /dev/hwrng
      echo vdb-serial=$(cat /sys/block/vdb/serial) vdb-ro=$(cat /sys/block/vdb/ro)
      dd if=/dev/hwrng of=/tmp/data bs=4096 count=\(blocks) 2>/dev/null
      echo data-md5=$(md5sum < /tmp/data)
      dd if=/tmp/data of=/dev/vda bs=4096 seek=\(Self.rawOffset / 4096) count=\(blocks) 2>/dev/null
      sync
      echo 3 > /proc/sys/vm/drop_caches
      echo readback-md5=$(dd if=/dev/vda bs=4096 skip=\(Self.rawOffset / 4096) count=\(blocks) 2>/dev/null | md5sum)
      busybox blockdev --setrw /dev/vdb
      dd if=/dev/zero of=/dev/vdb bs=512 count=1 oflag=direct conv=fsync 2>&1 | head -2
      busybox mke2fs -q /dev/vda 8192 && echo mke2fs-ok
      mkdir -p /mnt && mount -t ext2 /dev/vda /mnt && echo hello-ext2 > /mnt/hello.txt
      umount /mnt && sync && echo VIRTIO-ALL-SYNCED
      sleep 600
      """
    let p = Process()
    p.executableURL = URL(fileURLWithPath: GuestImages.swiftvmmBinary)
    p.arguments = [
      "linux", "--engine", "interpreter", "--disk", vda, "--disk", "\(vdb),readonly,id=ro-disk",
      "--rng", "--console",
      "virtio", "--run", commands,
    ]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let watchdog = DispatchWorkItem { kill(p.processIdentifier, SIGKILL) }
    DispatchQueue.global().asyncAfter(deadline: .now() + 900, execute: watchdog)
    var output = Data()
    var lockedWhileRunning: Error?
    while true {
      let d = pipe.fileHandleForReading.availableData
      if d.isEmpty { break }
      output += d
      if String(decoding: output, as: UTF8.self).contains("VIRTIO-ALL-SYNCED") {
        // A second read-write open is refused while the VMM holds the image.
        XCTAssertThrowsError(try DiskImage(path: vda, readOnly: false)) { lockedWhileRunning = $0 }
        kill(p.processIdentifier, SIGKILL)
        break
      }
    }
    p.waitUntilExit()
    watchdog.cancel()
    let out = String(decoding: output, as: UTF8.self)
    XCTAssertEqual(p.terminationReason, .uncaughtSignal, "killed, not powered off:\n\(out)")
    XCTAssertTrue(out.contains("VIRTIO-ALL-SYNCED"), out)
    XCTAssertEqual(lockedWhileRunning as? DiskImageError, .locked(vda))
    for dev in ["/dev/vda", "/dev/vdb", "/dev/hvc0", "/dev/hwrng"] {
      XCTAssertTrue(out.contains(dev), "\(dev) missing:\n\(out)")
    }
    XCTAssertTrue(out.contains("vdb-serial=ro-disk vdb-ro=1"), out)

    // The data the guest synced is on the host image, byte for byte.
    func field(_ name: String) -> String? {
      out.split(whereSeparator: \.isNewline).first { $0.hasPrefix(name + "=") }
        .map { String($0.dropFirst(name.count + 1).prefix(32)) }
    }
    let guestMD5 = try XCTUnwrap(field("data-md5"), out)
    XCTAssertEqual(
      field("readback-md5"), guestMD5, "read back from the device after dropping caches")
    let image = try Data(contentsOf: URL(fileURLWithPath: vda))
    let raw = image.subdata(in: Self.rawOffset..<(Self.rawOffset + Self.rawLength))
    try raw.write(to: URL(fileURLWithPath: dir + "/raw"))
    let md5 = try GuestImages.run("/usr/bin/md5sum", [dir + "/raw"]).output
    XCTAssertEqual(String(md5.prefix(32)), guestMD5)

    // The read-only disk: Linux honours VIRTIO_BLK_F_RO and refuses the write
    // itself (even after `blockdev --setrw`); VIRTIO_BLK_S_IOERR for a driver
    // that writes anyway is checked in VirtioBlockTests and Guests/virtio.
    XCTAssertTrue(
      out.contains("error writing '/dev/vdb'"), "the read-only write did not fail:\n\(out)")
    XCTAssertEqual(
      try Data(contentsOf: URL(fileURLWithPath: vdb)), Data(repeating: 0xA5, count: 1 << 20))

    // busybox mke2fs made a file system the host's e2fsprogs accept, with the file in it.
    XCTAssertTrue(out.contains("mke2fs-ok"), out)
    guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/debugfs") else {
      throw XCTSkip("host has no e2fsprogs to check the guest's ext2 file system")
    }
    let fsck = try GuestImages.run("/usr/sbin/e2fsck", ["-fn", vda])
    XCTAssertEqual(fsck.status, 0, fsck.output)
    let cat = try GuestImages.run("/usr/sbin/debugfs", ["-R", "cat /hello.txt", vda])
    XCTAssertTrue(cat.output.contains("hello-ext2"), cat.output)
  }
}
