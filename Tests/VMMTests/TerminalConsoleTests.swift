import Foundation
import Glibc
import TestSupport
import XCTest

/// Drives `swiftvmm run` on a real terminal (a tmux pane) as a user would:
/// keys go to the guest, the escape key and signals stop the VM, and the
/// terminal is left as it was. The guest is `Guests/echo`, which reports each
/// control key it receives and a checksum of what was typed.
final class TerminalConsoleTests: XCTestCase {
  /// One tmux server on its own socket, with one pane running a plain shell.
  final class Pane {
    let socket = "swiftvmm-test-\(getpid())-\(UUID().uuidString.prefix(8))"
    let dir: String

    init() throws {
      dir = NSTemporaryDirectory() + socket
      try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
      try tmux([
        "new-session", "-d", "-s", "t", "-x", "120", "-y", "40",
        "env -i PATH=/usr/bin:/bin TERM=xterm PS1='ready$ ' bash --norc --noprofile",
      ])
      // Keys typed before the shell set up its terminal would be flushed.
      guard waitFor("ready$", seconds: 20) else { throw XCTSkip("the tmux shell did not start") }
    }

    /// Through system(3) with output in a file: the tmux server inherits the
    /// client's descriptors, so a pipe would never reach end of file.
    @discardableResult
    func tmux(_ args: [String]) throws -> String {
      let out = dir + "/out"
      let quoted = args.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
      let cmd = "tmux -L \(socket) " + quoted.joined(separator: " ") + " >\(out) 2>&1 </dev/null"
      let status = system(cmd)
      let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
      guard status == 0 else {
        throw NSError(
          domain: "tmux", code: Int(status),
          userInfo: [NSLocalizedDescriptionKey: "tmux \(args.first ?? ""): \(text)"])
      }
      return text
    }

    func keys(_ k: String...) throws { try tmux(["send-keys", "-t", "t"] + k) }
    func type(_ text: String) throws { try tmux(["send-keys", "-t", "t", "-l", text]) }
    /// A real paste: the whole text lands in the terminal at once.
    func paste(_ text: String) throws {
      let f = dir + "/paste"
      try text.write(toFile: f, atomically: true, encoding: .utf8)
      try tmux(["load-buffer", "-b", "p", f])
      try tmux(["paste-buffer", "-d", "-b", "p", "-t", "t"])
    }
    func screen() -> String {
      (try? tmux(["capture-pane", "-p", "-S", "-200", "-t", "t"])) ?? ""
    }

    func waitFor(_ s: String, seconds: Double = 60) -> Bool {
      let end = Date().addingTimeInterval(seconds)
      while Date() < end {
        if screen().contains(s) { return true }
        usleep(100_000)
      }
      return false
    }

    func close() {
      _ = try? tmux(["kill-server"])
      try? FileManager.default.removeItem(atPath: dir)
    }
  }

  var pane: Pane!

  /// Starts the echo guest in the pane; the shell records the terminal modes
  /// before and after, the VMM's pid and its exit status.
  override func setUpWithError() throws {
    guard FileManager.default.isExecutableFile(atPath: CLITests.binary) else {
      throw XCTSkip("swiftvmm binary not built next to the test runner at \(CLITests.binary)")
    }
    guard (try? GuestImages.run("/usr/bin/env", ["tmux", "-V"], timeout: 10))?.status == 0 else {
      throw XCTSkip("tmux is not installed")
    }
    let echo = try GuestImages.path("echo.elf")
    pane = try Pane()
    let d = pane.dir
    try pane.type(
      "stty -g > \(d)/before; sh -c 'echo $$ > \(d)/pid; exec \(CLITests.binary) run --engine interpreter --kernel \(echo)'; echo STATUS=$?; stty -g > \(d)/after"
    )
    try pane.keys("Enter")
    XCTAssertTrue(pane.waitFor("echo ready"), pane.screen())
  }

  override func tearDown() {
    pane?.close()
  }

  func vmmPid() throws -> pid_t {
    let s = try String(contentsOfFile: pane.dir + "/pid", encoding: .utf8)
    return try XCTUnwrap(pid_t(s.trimmingCharacters(in: .whitespacesAndNewlines)))
  }

  /// The VMM ended with `status` and the terminal modes are as before it ran.
  func assertEnded(status: Int32, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertTrue(
      pane.waitFor("STATUS=\(status)", seconds: 30), pane.screen(), file: file, line: line)
    // Wait for the shell to record the modes after the run.
    let after = pane.dir + "/after"
    let end = Date().addingTimeInterval(10)
    while !FileManager.default.fileExists(atPath: after) && Date() < end { usleep(50_000) }
    usleep(200_000)
    let a = try? String(contentsOfFile: pane.dir + "/before", encoding: .utf8)
    let b = try? String(contentsOfFile: after, encoding: .utf8)
    XCTAssertNotNil(a, file: file, line: line)
    XCTAssertEqual(a, b, "terminal modes not restored", file: file, line: line)
  }

  func testCtrlCCtrlZAndCtrlBackslashReachTheGuest() throws {
    try pane.keys("C-c")
    XCTAssertTrue(pane.waitFor("key 03", seconds: 20), pane.screen())
    try pane.keys("C-z")
    XCTAssertTrue(pane.waitFor("key 1a", seconds: 20), pane.screen())
    try pane.keys("C-\\")
    XCTAssertTrue(pane.waitFor("key 1c", seconds: 20), pane.screen())
    // Escape twice sends one escape byte.
    try pane.keys("C-a", "C-a")
    XCTAssertTrue(pane.waitFor("key 01", seconds: 20), pane.screen())
    XCTAssertNil(
      pane.screen().range(of: "STATUS=[0-9]", options: .regularExpression),
      "the VM stopped:\n\(pane.screen())")
    try pane.keys("C-a", "x")
    assertEnded(status: 0)
  }

  func testEscapeXQuitsAndRestoresTheTerminal() throws {
    try pane.keys("C-a", "h")
    XCTAssertTrue(pane.waitFor("quit the VM", seconds: 20), pane.screen())
    try pane.keys("C-a", "x")
    assertEnded(status: 0)
    XCTAssertTrue(pane.screen().contains("quit from the console"), pane.screen())
  }

  func testSIGTERMStopsCleanlyAndRestoresTheTerminal() throws {
    kill(try vmmPid(), SIGTERM)
    assertEnded(status: 128 + SIGTERM)
    XCTAssertTrue(pane.screen().contains("stopped by SIGTERM"), pane.screen())
  }

  func testSIGHUPAndSIGQUITStopCleanly() throws {
    kill(try vmmPid(), SIGQUIT)
    assertEnded(status: 128 + SIGQUIT)
    XCTAssertFalse(pane.screen().contains("Backtrace"), pane.screen())
    // And once more with SIGHUP, in a fresh run.
    pane.close()
    try setUpWithError()
    kill(try vmmPid(), SIGHUP)
    assertEnded(status: 128 + SIGHUP)
  }

  /// SIGTSTP gives the terminal back to the shell; `fg` re-enters raw mode.
  func testSIGTSTPRestoresAndSIGCONTReentersRawMode() throws {
    let pid = try vmmPid()
    kill(pid, SIGTSTP)
    XCTAssertTrue(pane.waitFor("Stopped", seconds: 20), pane.screen())
    try pane.type("stty -g > \(pane.dir)/stopped; echo SAVED")
    try pane.keys("Enter")
    XCTAssertTrue(pane.waitFor("SAVED", seconds: 20), pane.screen())
    XCTAssertEqual(
      try String(contentsOfFile: pane.dir + "/before", encoding: .utf8),
      try String(contentsOfFile: pane.dir + "/stopped", encoding: .utf8),
      "terminal not restored while stopped")
    try pane.type("fg")
    try pane.keys("Enter")
    usleep(500_000)
    try pane.keys("C-c")
    XCTAssertTrue(pane.waitFor("key 03", seconds: 20), "not raw after fg:\n\(pane.screen())")
    try pane.keys("C-a", "x")
    // The shell already ran the rest of its command line when the job
    // stopped, so check the modes with a fresh command.
    XCTAssertTrue(pane.waitFor("quit from the console", seconds: 20), pane.screen())
    try pane.type("stty -g > \(pane.dir)/end; echo ENDED")
    try pane.keys("Enter")
    XCTAssertTrue(pane.waitFor("ENDED", seconds: 20), pane.screen())
    usleep(200_000)
    XCTAssertEqual(
      try String(contentsOfFile: pane.dir + "/before", encoding: .utf8),
      try String(contentsOfFile: pane.dir + "/end", encoding: .utf8),
      "terminal not restored after fg and quit")
  }

  /// 2 KB pasted at once all reach the guest, in order.
  func testPasting2KBLosesNothing() throws {
    var g = SeededRandom(seed: 2048)
    let text = String(
      (0..<2048).map { _ in
        Character(UnicodeScalar(UInt8.random(in: UInt8(ascii: "a")...UInt8(ascii: "z"), using: &g)))
      })
    var fnv: UInt32 = 2_166_136_261
    for b in text.utf8 { fnv = (fnv ^ UInt32(b)) &* 16_777_619 }
    try pane.paste(text + "!")
    let hex = String(fnv, radix: 16)
    let want = "count=2048 fnv=" + String(repeating: "0", count: 8 - hex.count) + hex
    XCTAssertTrue(pane.waitFor(want, seconds: 60), "want \(want):\n\(pane.screen())")
    try pane.keys("C-a", "x")
    assertEnded(status: 0)
  }
}
