import Boot
import Engine
import Foundation
import TestSupport
import XCTest

@testable import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// A Linux guest whose console is hvc0 (virtio-console) and whose network is
/// virtio-net on slirp, saved while its shell waits for a line on hvc0 and restored
/// on the other software engine: the console's queues carry on (the typed line
/// reaches the shell, its answer comes back) and the network works again over a
/// fresh slirp back-end (a new DHCP exchange). Release builds only.
final class LinuxVirtioSnapshotTests: XCTestCase {
  func testConsoleAndNetworkSurviveASnapshotAcrossEngines() throws {
    guard let g = LinuxGuestImages.locate() else {
      throw XCTSkip("Debian guest not fetched; run `swiftvmm guest fetch-linux`")
    }
    #if DEBUG
      throw XCTSkip("needs a release build (scripts/test): the debug interpreter is too slow")
    #endif
    let lease =
      "busybox udhcpc -i eth0 -n -q -s /bin/true 2>&1 | grep -o 'lease of [0-9.]* obtained'"
    let commands = """
      ip link set eth0 up
      \(lease)
      echo SAVE-NOW
      read line
      echo got=$line
      \(lease) | sed s/lease/renewed-lease/
      echo AFTER-RESTORE
      """
    var c = MachineConfig(
      kernel: [UInt8](try Data(contentsOf: URL(fileURLWithPath: g.bzImage))), kernelName: "vmlinuz",
      engine: .interpreter)
    c.initrd = try StandardInitramfs.build(
      guest: g, initScript: StandardInitramfs.initScript(commands: commands))
    c.commandLine = "console=hvc0 panic=-1"
    c.memorySize = 256 << 20
    c.cpuid = try CPUIDPolicy.named("kvm")
    c.timeout = 900
    c.virtio.console = .virtio
    c.virtio.network = .user(forwards: [])

    let path = FileManager.default.temporaryDirectory
      .appendingPathComponent("linux-virtio-\(getpid()).snap").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    let before = Transcript()
    let m = try Machine(config: c, console: ConsoleOutput { before.append(Data($0)) })
    m.setInputOpen(true)  // the shell waits for a line: not a hung guest
    let saved = SavedResult()
    Thread.detachNewThread {
      let end = Date() + 900
      while !before.snapshot.contains("SAVE-NOW") && Date() < end { usleep(50_000) }
      sleep(1)  // the shell is waiting in read
      if m.pause() {
        do { saved.set(.success(try m.onVCPUThread { try m.saveSnapshot(to: path) })) } catch {
          saved.set(.failure(error))
        }
      }
      m.requestStop(.signal(SIGTERM))
    }
    let first = m.run()
    XCTAssertEqual(first, .signal(SIGTERM), before.snapshot.suffix(3000).description)
    XCTAssertTrue(
      before.snapshot.contains("lease of 10.0.2.15 obtained"),
      before.snapshot.suffix(3000).description)
    let summary = try XCTUnwrap(saved.get()).get()
    print("hvc0 + virtio-net Linux snapshot: \(summary.bytes) bytes, saved in \(summary.seconds) s")

    let after = Transcript()
    let r = try Machine(
      restoring: path, engine: .translator, timeout: 900,
      console: ConsoleOutput { after.append(Data($0)) })
    Thread.detachNewThread { r.feedInput(Array("typed-after-restore\n".utf8)) }
    let outcome = r.run()
    let text = after.snapshot
    XCTAssertEqual(outcome, .powerOff, text.suffix(3000).description)
    XCTAssertTrue(text.contains("got=typed-after-restore"), "hvc0 input after restore\n\(text)")
    XCTAssertTrue(
      text.contains("renewed-lease of 10.0.2.15 obtained"), "network after restore\n\(text)")
    XCTAssertTrue(text.contains("AFTER-RESTORE"), text)
  }
}

private final class SavedResult: @unchecked Sendable {
  private let lock = NSLock()
  private var value: Result<SnapshotSummary, Error>?
  func set(_ v: Result<SnapshotSummary, Error>) { lock.withLock { value = v } }
  func get() -> Result<SnapshotSummary, Error>? { lock.withLock { value } }
}
