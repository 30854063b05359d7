import Boot
import Foundation
import TestSupport
import XCTest

/// Types into the busybox shell through the CLI's stdin, as a user would.
final class InteractiveConsoleTests: XCTestCase {
  func testShellRunsTypedCommandsAndPowersOff() throws {
    _ = try requireLinuxGuestAndBinary()
    let p = Process()
    p.executableURL = URL(fileURLWithPath: GuestImages.swiftvmmBinary)
    p.arguments = ["linux", "--engine", "interpreter", "--cpuid", "kvm"]
    let input = Pipe()
    let output = Pipe()
    p.standardInput = input
    p.standardOutput = output
    p.standardError = output
    let transcript = Transcript()
    output.fileHandleForReading.readabilityHandler = { transcript.append($0.availableData) }
    try p.run()
    func waitFor(_ s: String, seconds: Double) -> Bool {
      let end = Date().addingTimeInterval(seconds)
      while Date() < end {
        if transcript.snapshot.contains(s) { return true }
        if !p.isRunning { return false }
        usleep(100_000)
      }
      return false
    }
    defer { if p.isRunning { p.terminate() } }
    XCTAssertTrue(
      waitFor("Type 'poweroff' to stop.", seconds: 600),
      "no banner:\n\(transcript.snapshot.suffix(2000))")
    // Let the shell reach its prompt, then type.
    XCTAssertTrue(waitFor("# ", seconds: 120), "no prompt:\n\(transcript.snapshot.suffix(2000))")
    input.fileHandleForWriting.write(Data("echo typed-$((40 + 2))\n".utf8))
    XCTAssertTrue(
      waitFor("typed-42", seconds: 120),
      "command output missing:\n\(transcript.snapshot.suffix(2000))")
    input.fileHandleForWriting.write(Data("poweroff\n".utf8))
    p.waitUntilExit()
    XCTAssertEqual(p.terminationStatus, 0, transcript.snapshot.suffix(2000).description)
  }
}
