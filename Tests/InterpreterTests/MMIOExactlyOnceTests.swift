import Engine
import Foundation
import Memory
import X86
import XCTest

@testable import Interpreter

/// A RAM-like MMIO device at 0xD000_0000 that records every access it sees.
final class RecordingDevice {
  var bytes: [UInt64: UInt8] = [:]
  var trace: [MMIOAccess] = []

  func preset(_ address: UInt64, _ value: UInt64) {
    for i in 0..<8 { bytes[address + UInt64(i)] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
  }

  /// Runs `cpu` until an exit other than MMIO, answering MMIO as the VMM does.
  /// `between` runs after each answered exit (a snapshot test swaps the CPU there).
  func drive(
    _ cpu: () -> InterpreterCPU, between: () throws -> Void = {}, maxExits: Int = 1000
  ) throws -> VMExit {
    for _ in 0..<maxExits {
      let e = try cpu().run()
      guard case .mmio(var a) = e else { return e }
      let base = a.address.rawValue
      if a.isWrite {
        for i in 0..<a.size {
          bytes[base + UInt64(i)] = UInt8(truncatingIfNeeded: a.value >> (8 * i))
        }
      } else {
        a.value = (0..<a.size).reduce(0) { $0 | UInt64(bytes[base + UInt64($1)] ?? 0) << (8 * $1) }
        cpu().completeIO(value: a.value)
      }
      trace.append(a)
      try between()
    }
    XCTFail("no exit but MMIO in \(maxExits) exits")
    return .interrupted
  }
}

/// Every device access an instruction makes happens once, in program order, across
/// the exits and restarts of that instruction (MMIOReplay.swift).
final class MMIOExactlyOnceTests: XCTestCase {
  static let base: UInt64 = 0xD000_0000

  func r(_ a: UInt64, _ size: Int, _ v: UInt64) -> MMIOAccess {
    MMIOAccess(address: GuestPhysicalAddress(Self.base + a), size: size, isWrite: false, value: v)
  }
  func w(_ a: UInt64, _ size: Int, _ v: UInt64) -> MMIOAccess {
    MMIOAccess(address: GuestPhysicalAddress(Self.base + a), size: size, isWrite: true, value: v)
  }

  func machine(_ code: [UInt8]) throws -> TestMachine {
    let m = try TestMachine(ramMiB: 64)
    try m.load(code, at: UnitTests.codeBase)
    try m.setLongMode(rip: UnitTests.codeBase)
    try m.installHaltingIDT(idtBase: UnitTests.idtBase, handlerBase: UnitTests.handlerBase)
    return m
  }

  /// mov esp,0xD0000100 ; mov ebp,0xD0000080 ; enter 0,2
  let enter2: [UInt8] = [
    0xBC, 0x00, 0x01, 0x00, 0xD0, 0xBD, 0x80, 0x00, 0x00, 0xD0, 0xC8, 0x00, 0x00, 0x02,
  ]
  let v: UInt64 = 0x1122_3344_5566_7788

  /// ENTER with its stack in MMIO writes, reads, writes and reads: the device sees
  /// the push of RBP before the read of the outer frame pointer, and each access once.
  func testEnterWritesAndReadsInProgramOrder() throws {
    let m = try machine(enter2 + [0xF4])
    let dev = RecordingDevice()
    dev.preset(Self.base + 0x78, v)
    XCTAssertEqual(try dev.drive { m.cpu }, .halt)
    XCTAssertEqual(
      dev.trace,
      [
        w(0xF8, 8, 0xD000_0080), r(0x78, 8, v), w(0xF0, 8, v), w(0xE8, 8, 0xD000_00F8),
        r(0xE8, 1, 0xF8),
      ])
    let g = try m.cpu.getState().general
    XCTAssertEqual(g.rsp, 0xD000_00E8)
    XCTAssertEqual(g.rbp, 0xD000_00F8)
  }

  /// REPE CMPSB with both strings in MMIO: each element's two reads once, in order
  /// (the log of one element must not be replayed against the next).
  func testRepCmpsReadsEachElementOnce() throws {
    // mov esi,0xD0000000 ; mov edi,0xD0000100 ; mov ecx,3 ; repe cmpsb ; hlt
    let m = try machine([
      0xBE, 0x00, 0x00, 0x00, 0xD0, 0xBF, 0x00, 0x01, 0x00, 0xD0, 0xB9, 3, 0, 0, 0, 0xF3, 0xA6,
      0xF4,
    ])
    let dev = RecordingDevice()
    XCTAssertEqual(try dev.drive { m.cpu }, .halt)
    XCTAssertEqual(
      dev.trace,
      [r(0, 1, 0), r(0x100, 1, 0), r(1, 1, 0), r(0x101, 1, 0), r(2, 1, 0), r(0x102, 1, 0)])
    XCTAssertEqual(try m.cpu.getState().general.rcx, 0)
  }

  /// An instruction that faults after writing MMIO: its write never reaches the
  /// device, only the exception frame pushed onto the MMIO stack does.
  func testFaultingInstructionMakesNoWrite() throws {
    // mov esp,0xD0000100 ; mov rbp,0x100000008 ; enter 0,2 (reads [0x100000000]: #PF) ; hlt
    let m = try machine([
      0xBC, 0x00, 0x01, 0x00, 0xD0, 0x48, 0xBD, 0x08, 0, 0, 0, 1, 0, 0, 0, 0xC8, 0x00, 0x00, 0x02,
      0xF4,
    ])
    let dev = RecordingDevice()
    XCTAssertEqual(try dev.drive { m.cpu }, .halt)
    XCTAssertEqual(try m.cpu.getState().general.rax, 14, "the #PF handler ran")
    XCTAssertFalse(dev.trace.contains(w(0xF8, 8, 0x1_0000_0008)), "ENTER's push of RBP")
    XCTAssertEqual(
      dev.trace.map(\.address.rawValue),
      [0xF8, 0xF0, 0xE8, 0xE0, 0xD8, 0xD0].map { Self.base + $0 })
    XCTAssertTrue(dev.trace.allSatisfy(\.isWrite))
  }

  /// A data breakpoint on ENTER's first push, which goes to the device before ENTER's
  /// read: the #DB trap comes once ENTER has retired, not at that early exit.
  func testDataBreakpointTrapsAfterTheWholeInstruction() throws {
    // mov eax,0xD00000F8 ; mov dr0,rax ; mov eax,0x90001 (L0, write, 8 bytes) ; mov dr7,rax
    let m = try machine(
      [
        0xB8, 0xF8, 0x00, 0x00, 0xD0, 0x0F, 0x23, 0xC0, 0xB8, 0x01, 0x00, 0x09, 0x00, 0x0F, 0x23,
        0xF8,
      ]
        + enter2 + [0xF4])
    let dev = RecordingDevice()
    dev.preset(Self.base + 0x78, v)
    XCTAssertEqual(try dev.drive { m.cpu }, .halt)
    XCTAssertEqual(try m.cpu.getState().general.rax, 1, "the #DB handler ran")
    XCTAssertEqual(m.cpu.dr[6] & 0xF, 1, "DR6.B0")
    XCTAssertEqual(
      Array(dev.trace.prefix(5)),
      [
        w(0xF8, 8, 0xD000_0080), r(0x78, 8, v), w(0xF0, 8, v), w(0xE8, 8, 0xD000_00F8),
        r(0xE8, 1, 0xF8),
      ])
    // The #DB frame below ENTER's (RSP aligned down to 16): RIP last, after ENTER.
    XCTAssertEqual(dev.trace.count, 10)
    XCTAssertEqual(dev.trace.last, w(0xB8, 8, UnitTests.codeBase + 30))
  }

  /// PUSH and CALL through an MMIO pointer onto an MMIO stack; CMPXCHG16B on MMIO
  /// (two reads, then two writes).
  func testPushCallAndCmpxchg16bOnMMIO() throws {
    let m = try machine([
      0xBC, 0x00, 0x01, 0x00, 0xD0,  // mov esp,0xD0000100
      0xBB, 0x00, 0x02, 0x00, 0xD0,  // mov ebx,0xD0000200
      0xFF, 0x33,  // push qword [rbx]
      0xFF, 0x13,  // call qword [rbx] (to the next instruction)
      0xBE, 0x00, 0x03, 0x00, 0xD0,  // mov esi,0xD0000300
      0x31, 0xC0, 0x31, 0xD2,  // xor eax,eax ; xor edx,edx
      0xBB, 0x11, 0x11, 0, 0, 0xB9, 0x22, 0x22, 0, 0,  // mov ebx,0x1111 ; mov ecx,0x2222
      0xF0, 0x48, 0x0F, 0xC7, 0x0E,  // lock cmpxchg16b [rsi]
      0xF4,
    ])
    let dev = RecordingDevice()
    let target = UnitTests.codeBase + 14
    dev.preset(Self.base + 0x200, target)
    XCTAssertEqual(try dev.drive { m.cpu }, .halt)
    XCTAssertEqual(
      dev.trace,
      [
        r(0x200, 8, target), w(0xF8, 8, target), r(0x200, 8, target), w(0xF0, 8, target),
        r(0x300, 8, 0), r(0x308, 8, 0), w(0x300, 8, 0x1111), w(0x308, 8, 0x2222),
      ])
    XCTAssertEqual(try m.cpu.getState().general.rsp, 0xD000_00F0)
  }

  /// ENTER, ADD and XCHG on MMIO, REP MOVSQ MMIO to MMIO, POP to MMIO from an MMIO stack.
  lazy var mixed: [UInt8] =
    enter2 + [
      0xBB, 0x00, 0x02, 0x00, 0xD0,  // mov ebx,0xD0000200
      0xB8, 5, 0, 0, 0,  // mov eax,5
      0x48, 0x01, 0x03,  // add [rbx],rax
      0xB8, 7, 0, 0, 0,  // mov eax,7
      0x48, 0x87, 0x03,  // xchg [rbx],rax
      0xBE, 0x00, 0x03, 0x00, 0xD0,  // mov esi,0xD0000300
      0xBF, 0x00, 0x04, 0x00, 0xD0,  // mov edi,0xD0000400
      0xB9, 2, 0, 0, 0,  // mov ecx,2
      0xF3, 0x48, 0xA5,  // rep movsq
      0x8F, 0x03,  // pop qword [rbx]
      0xF4,
    ]

  func mixedDevice() -> RecordingDevice {
    let dev = RecordingDevice()
    dev.preset(Self.base + 0x78, v)
    dev.preset(Self.base + 0x300, 0xA)
    dev.preset(Self.base + 0x308, 0xB)
    return dev
  }

  lazy var mixedTrace: [MMIOAccess] = [
    w(0xF8, 8, 0xD000_0080), r(0x78, 8, v), w(0xF0, 8, v), w(0xE8, 8, 0xD000_00F8),
    r(0xE8, 1, 0xF8),
    r(0x200, 8, 0), w(0x200, 8, 5),
    r(0x200, 8, 5), w(0x200, 8, 7),
    r(0x300, 8, 0xA), w(0x400, 8, 0xA), r(0x308, 8, 0xB), w(0x408, 8, 0xB),
    r(0xE8, 8, 0xD000_00F8), w(0x200, 8, 0xD000_00F8),
  ]

  func testReadModifyWriteStringAndStackForms() throws {
    let m = try machine(mixed)
    let dev = mixedDevice()
    XCTAssertEqual(try dev.drive { m.cpu }, .halt)
    XCTAssertEqual(dev.trace, mixedTrace)
    let g = try m.cpu.getState().general
    XCTAssertEqual(g.rax, 5)
    XCTAssertEqual(g.rsp, 0xD000_00F0)
  }

  /// The translator engine interprets MMIO instructions: the same traffic.
  func testTranslatorEngineSameTraffic() throws {
    let m = try machine(mixed)
    m.cpu.translator = try BlockTranslator()
    let dev = mixedDevice()
    XCTAssertEqual(try dev.drive { m.cpu }, .halt)
    XCTAssertEqual(dev.trace, mixedTrace)
  }

  /// A snapshot after every exit (between the exits of one instruction, with reads
  /// completed and writes queued), restored into a new CPU through JSON as a snapshot
  /// file carries it: the device traffic of an uninterrupted run.
  func testSnapshotBetweenExitsKeepsTraffic() throws {
    let m = try machine(mixed)
    var cpu = m.cpu
    var midInstruction = 0
    let dev = mixedDevice()
    let e = try dev.drive({ cpu }) {
      let saved = try cpu.saveVCPU()
      if saved.mmio != nil { midInstruction += 1 }
      let json = try JSONEncoder().encode(saved)
      let fresh = try InterpreterCPU(memory: m.memory, cpuid: .default)
      try fresh.restoreVCPU(try JSONDecoder().decode(VCPUSnapshot.self, from: json))
      cpu = fresh
    }
    XCTAssertEqual(e, .halt)
    XCTAssertEqual(dev.trace, mixedTrace)
    XCTAssertGreaterThan(midInstruction, 5, "snapshots taken inside instructions")
    XCTAssertEqual(try cpu.getState().general.rax, 5)
  }

  /// A snapshot without the `mmio` key (older files) still loads and finishes a read.
  func testOldSnapshotWithOnePendingReadLoads() throws {
    // mov ebx,0xD0000010 ; mov eax,[rbx] ; hlt
    let m = try machine([0xBB, 0x10, 0x00, 0x00, 0xD0, 0x8B, 0x03, 0xF4])
    XCTAssertEqual(
      try m.cpu.run(),
      .mmio(MMIOAccess(address: GuestPhysicalAddress(Self.base + 0x10), size: 4, isWrite: false)))
    m.cpu.completeIO(value: 0xBEEF)
    var s = try m.cpu.saveVCPU()
    XCTAssertNotNil(s.mmio)
    s.mmio = nil
    s.pendingRead = .init(mmio: true, key: Self.base + 0x10, value: 0xBEEF)
    let fresh = try InterpreterCPU(memory: m.memory, cpuid: .default)
    try fresh.restoreVCPU(s)
    XCTAssertEqual(try fresh.run(), .halt)
    XCTAssertEqual(try fresh.getState().general.rax, 0xBEEF)
  }
}
