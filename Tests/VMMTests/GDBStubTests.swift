import Engine
import X86
import XCTest

@testable import VMM

final class GDBPacketTests: XCTestCase {
  private func feed(_ s: String) -> [GDBPacketDecoder.Event] {
    var d = GDBPacketDecoder()
    return Array(s.utf8).compactMap { d.feed($0) }
  }

  func testFramesAndChecksums() {
    XCTAssertEqual(
      String(decoding: GDBPacketDecoder.frame(Array("OK".utf8)), as: UTF8.self), "$OK#9a")
    XCTAssertEqual(feed("$g#67"), [.packet(Array("g".utf8))])
    XCTAssertEqual(feed("$g#68"), [.badPacket])
    XCTAssertEqual(feed("$g#zz"), [.badPacket])
    XCTAssertEqual(feed("+-\u{03}"), [.ack, .nak, .interrupt])
    // Noise between packets is skipped; a '$' inside a packet restarts it.
    XCTAssertEqual(feed("xx$m0,1$g#67"), [.packet(Array("g".utf8))])
  }

  func testEscapesRoundTrip() {
    let payload: [UInt8] = [0x24, 0x23, 0x7D, 0x2A, 0x00, 0xFF]
    let framed = GDBPacketDecoder.frame(payload)
    XCTAssertFalse(framed.dropFirst().dropLast(3).contains(UInt8(ascii: "$")))
    var d = GDBPacketDecoder()
    XCTAssertEqual(framed.compactMap { d.feed($0) }, [.packet(payload)])
  }

  func testOversizePacketIsRefusedAndBounded() {
    var d = GDBPacketDecoder()
    var events: [GDBPacketDecoder.Event] = []
    if let e = d.feed(UInt8(ascii: "$")) { events.append(e) }
    for _ in 0..<(GDBPacketDecoder.maxPacket * 2) {
      if let e = d.feed(UInt8(ascii: "a")) { events.append(e) }
    }
    for b in "#00".utf8 { if let e = d.feed(b) { events.append(e) } }
    XCTAssertEqual(events, [.badPacket])
    XCTAssertEqual(feed("$g#67"), [.packet(Array("g".utf8))])
  }

  func testHexNumbers() {
    XCTAssertEqual(GDBHex.number(Array("ffff8000".utf8)[...]), 0xFFFF_8000)
    XCTAssertNil(GDBHex.number(Array("".utf8)[...]))
    XCTAssertNil(GDBHex.number(Array("12345678123456789".utf8)[...]))
    XCTAssertNil(GDBHex.decode(Array("abc".utf8)))
    XCTAssertEqual(GDBHex.decode(Array("00fF".utf8)), [0, 255])
  }

  /// Whatever arrives, the decoder never traps and keeps its buffer bounded.
  func testRandomInputNeverTraps() {
    var rng = SystemRandomNumberGenerator()
    var d = GDBPacketDecoder()
    for _ in 0..<200_000 { _ = d.feed(UInt8.random(in: 0...255, using: &rng)) }
  }
}

/// A target with 64 KiB of flat memory and registers in a struct.
private final class FakeTarget: GDBTarget {
  var file = GDBRegisterFile(state: CPUState(), fx: nil)
  var memory = [UInt8](repeating: 0, count: 65536)
  var stops: [DebugStop] = []
  var resumed: [DebugSettings] = []
  var killed = false
  var exitStatus: Int32?
  func stop() -> Bool { exitStatus == nil }
  func takeStop() -> DebugStop? { stops.isEmpty ? nil : stops.removeFirst() }
  func registers() throws -> GDBRegisterFile { file }
  func setRegisters(_ r: GDBRegisterFile) throws { file = r }
  func readMemory(_ a: UInt64, count: Int) throws -> [UInt8] {
    guard a < 65536 else { return [] }
    return Array(memory[Int(a)..<min(65536, Int(a) + count)])
  }
  func writeMemory(_ a: UInt64, _ bytes: [UInt8]) throws -> Bool {
    guard a + UInt64(bytes.count) <= 65536 else { return false }
    memory.replaceSubrange(Int(a)..<Int(a) + bytes.count, with: bytes)
    return true
  }
  func resume(_ s: DebugSettings) throws { resumed.append(s) }
  func kill() { killed = true }
}

final class GDBStubTests: XCTestCase {
  private var out: [UInt8] = []
  private var target = FakeTarget()
  private lazy var stub = GDBStub(target: target) { [unowned self] in self.out += $0 }

  /// Sends one command and returns the reply payload (after the '+' ack).
  @discardableResult
  private func command(_ s: String) -> String {
    out = []
    stub.receive(GDBPacketDecoder.frame(Array(s.utf8)))
    return payload(out)
  }

  private func payload(_ bytes: [UInt8]) -> String {
    var d = GDBPacketDecoder()
    for e in bytes.compactMap({ d.feed($0) }) {
      if case .packet(let p) = e { return String(decoding: p, as: UTF8.self) }
    }
    return "<none>"
  }

  func testHandshakeAndTargetDescription() {
    stub.attach()
    XCTAssertTrue(command("qSupported:multiprocess+;swbreak+").contains("qXfer:features:read+"))
    XCTAssertEqual(out.first, UInt8(ascii: "+"))
    XCTAssertEqual(command("?"), "T05thread:01;")
    var xml = ""
    var off = 0
    while true {
      let r = command("qXfer:features:read:target.xml:\(String(off, radix: 16)),100")
      xml += r.dropFirst()
      off += r.count - 1
      if r.hasPrefix("l") { break }
      XCTAssertTrue(r.hasPrefix("m"))
    }
    XCTAssertEqual(xml, GDBRegisters.targetXML)
    XCTAssertTrue(xml.contains("<reg name=\"cr3\""))
    XCTAssertEqual(command("vMustReplyEmpty"), "")
  }

  func testRegistersReadAndWrite() {
    target.file.state.general.rax = 0x1122_3344_5566_7788
    target.file.state.general.rip = 0x10_0000
    let g = command("g")
    XCTAssertTrue(g.hasPrefix("8877665544332211"))
    // Without an FXSAVE image the x87/SSE registers are unavailable, not zero.
    XCTAssertTrue(g.contains("xxxx"))
    XCTAssertEqual(g.count, GDBRegisters.all.reduce(0) { $0 + $1.bytes * 2 })
    XCTAssertEqual(command("p10"), "0000100000000000")  // regnum 16 = rip
    XCTAssertEqual(command("P3=efbeadde00000000"), "OK")  // rdx
    XCTAssertEqual(target.file.state.general.rdx, 0xDEAD_BEEF)
    XCTAssertEqual(command("P12=1000"), "E01")  // cs: a selector cannot be written this way
    XCTAssertEqual(command("p999"), "E01")
    XCTAssertEqual(command("G" + g), "OK")
  }

  func testMemoryReadWriteAndErrors() {
    XCTAssertEqual(command("M100,4:deadbeef"), "OK")
    XCTAssertEqual(command("m100,4"), "deadbeef")
    XCTAssertEqual(command("X104,2:#A"), "OK")  // frame() escapes the binary #
    XCTAssertEqual(Array(target.memory[0x104...0x105]), [0x23, 0x41])
    XCTAssertEqual(command("m20000,4"), "E14")
    XCTAssertEqual(command("M100,4:dead"), "E01")
    XCTAssertEqual(command("m100"), "E01")
    XCTAssertEqual(command("m100,ffffffff"), "E01")
  }

  func testBreakpointsContinueStepAndStops() {
    stub.attach()
    XCTAssertEqual(command("Z0,1000,1"), "OK")
    XCTAssertEqual(command("Z1,2000,1"), "OK")
    XCTAssertEqual(command("Z2,3000,4"), "OK")
    XCTAssertEqual(command("Z9,3000,4"), "")
    XCTAssertEqual(command("Z0,zz,1"), "E01")
    XCTAssertEqual(command("c"), "<none>")
    XCTAssertTrue(stub.running)
    XCTAssertEqual(
      target.resumed.last,
      DebugSettings(
        breakpoints: [0x1000, 0x2000],
        watchpoints: [Watchpoint(address: 0x3000, length: 4, kind: .write)]))
    // Packets other than Ctrl-C are ignored while the guest runs.
    XCTAssertEqual(command("g"), "<none>")
    target.stops = [.breakpoint(rip: 0x1000)]
    out = []
    stub.poll()
    XCTAssertEqual(payload(out), "T05swbreak:;thread:01;")
    XCTAssertFalse(stub.running)
    command("vCont;s:1")
    XCTAssertEqual(target.resumed.last?.singleStep, true)
    target.stops = [
      .watchpoint(Watchpoint(address: 0x3000, length: 4, kind: .write), address: 0x3000)
    ]
    out = []
    stub.poll()
    XCTAssertEqual(payload(out), "T05watch:3000;thread:01;")
    XCTAssertEqual(command("z0,1000,1"), "OK")
    command("c")
    out = []
    stub.receive([0x03])
    XCTAssertEqual(payload(out), "T02thread:01;")
    command("c")
    target.exitStatus = 3
    out = []
    stub.poll()
    XCTAssertEqual(payload(out), "W03")
    XCTAssertTrue(stub.finished)
  }

  func testDetachLeavesTheVMRunningWithoutStops() {
    stub.attach()
    command("Z0,1000,1")
    XCTAssertEqual(command("D"), "OK")
    XCTAssertTrue(stub.finished)
    XCTAssertEqual(target.resumed.last, DebugSettings())
    XCTAssertFalse(target.killed)
  }

  func testKillAndBadChecksum() {
    out = []
    stub.receive(Array("$g#00".utf8))
    XCTAssertEqual(out, [UInt8(ascii: "-")])
    command("k")
    XCTAssertTrue(target.killed)
  }

  /// Random packets with good checksums: the stub answers or ignores, never traps.
  func testRandomCommandsNeverTrap() {
    var rng = SystemRandomNumberGenerator()
    let alphabet = Array("?gGpPmMXZzcsvqQHTD0123456789abcdefx,:;=".utf8)
    for _ in 0..<5000 {
      let n = Int.random(in: 0..<40, using: &rng)
      var p = (0..<n).map { _ in alphabet.randomElement(using: &rng)! }
      if p.first == UInt8(ascii: "k") || p.first == UInt8(ascii: "D") { p[0] = UInt8(ascii: "g") }
      stub.receive(GDBPacketDecoder.frame(p))
      if stub.running { stub.receive([0x03]) }
    }
  }
}
