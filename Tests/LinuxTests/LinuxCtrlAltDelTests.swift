import Boot
import Engine
import Foundation
import TestSupport
import XCTest

@testable import VMM

/// SendCtrlAltDel end to end: the i8042 keyboard's scan codes reach Linux's atkbd,
/// the kernel's keyboard driver turns Ctrl-Alt-Del into a restart, and the guest
/// resets the machine.
final class LinuxCtrlAltDelTests: XCTestCase {
  func testCtrlAltDelRebootsLinux() throws {
    guard let g = LinuxGuestImages.locate() else {
      throw XCTSkip("Debian guest not fetched; run `swiftvmm guest fetch-linux`")
    }
    #if DEBUG
      throw XCTSkip("Linux boot tests need a release build (scripts/test)")
    #endif
    let marker = "SWIFTVMM-CAD-READY"
    let initrd = try StandardInitramfs.build(
      guest: g,
      initScript: StandardInitramfs.initScript(
        commands: "grep -i keyboard /proc/bus/input/devices; echo \(marker); sleep 600"),
      gzip: false)
    var c = MachineConfig(
      kernel: [UInt8](try Data(contentsOf: URL(fileURLWithPath: g.bzImage))), kernelName: "vmlinuz",
      engine: .interpreter)
    c.initrd = initrd
    c.commandLine = "console=ttyS0 panic=-1"
    c.memorySize = 256 << 20
    c.cpuid = try CPUIDPolicy.named("kvm")
    c.timeout = 900
    let console = ConsoleOutput(capturing: ())
    let ready = DispatchSemaphore(value: 0)
    console.lineObserver = { if $0.contains(marker) { ready.signal() } }
    let m = try Machine(config: c, console: console)
    final class Box: @unchecked Sendable { var outcome: MachineOutcome? }
    let box = Box()
    let done = DispatchSemaphore(value: 0)
    Thread {
      box.outcome = m.run()
      done.signal()
    }.start()
    guard ready.wait(timeout: .now() + 900) == .success else {
      m.requestStop(.userQuit)
      done.wait()
      return XCTFail("the guest never got ready: \(console.capturedText.suffix(3000))")
    }
    XCTAssertTrue(m.sendCtrlAltDel(), "the guest did not enable its keyboard")
    guard done.wait(timeout: .now() + 120) == .success else {
      m.requestStop(.userQuit)
      done.wait()
      return XCTFail("no reset after Ctrl-Alt-Del: \(console.capturedText.suffix(3000))")
    }
    XCTAssertEqual(box.outcome, .reset, console.capturedText.suffix(3000).description)
    XCTAssertTrue(
      console.capturedText.contains("AT Translated Set 2 keyboard")
        || console.capturedText.contains("AT Raw Set 2 keyboard"),
      "atkbd did not bind: \(console.capturedText.suffix(3000))")
  }
}
