import Engine
import Memory
import X86
import XCTest

@testable import Interpreter

/// Faults a hostile guest can provoke (issue 8): each test fails on the code before its fix.
extension UnitTests {
  /// insb from port 0x64 into a read-only page, then `in al,0x99` in the #PF handler:
  /// the handler's IN must exit for port 0x99, not return the i8042 status.
  func testINSIntoReadOnlyPageFaultsBeforeThePortRead() throws {
    // mov edi,0x1000000 ; mov dx,0x64 ; insb ; hlt
    let m = try machine64([0xBF, 0, 0, 0, 0x01, 0x66, 0xBA, 0x64, 0x00, 0x6C, 0xF4])
    try setPDE(m, 0x100_0000, 0x100_0000 | 0x81)  // present, read-only 2 MiB page
    // #PF handler: in al,0x99 ; hlt
    try m.load([0xE4, 0x99, 0xF4], at: UnitTests.handlerBase + 14 * 16)
    XCTAssertEqual(try m.cpu.run(), .portIO(PortIOAccess(port: 0x99, size: 1, direction: .in)))
    m.cpu.completeIO(value: 0x5A)
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax & 0xFF, 0x5A)
    XCTAssertEqual(try m.cpu.getState().special.cr2, 0x100_0000)
  }

  /// A completed IN value belongs to its port and size only.
  func testCompletedPortValueIsKeyedByPortAndSize() throws {
    // in al,0x99 ; in ax,0x64 ; hlt
    let m = try machine64([0xE4, 0x99, 0x66, 0xE5, 0x64, 0xF4])
    m.cpu.ioValue = 0x1C
    m.cpu.ioKey = 0x64 | 1 << 16
    XCTAssertEqual(try m.cpu.run(), .portIO(PortIOAccess(port: 0x99, size: 1, direction: .in)))
    m.cpu.completeIO(value: 0x11)
    XCTAssertEqual(try m.cpu.run(), .portIO(PortIOAccess(port: 0x64, size: 2, direction: .in)))
    m.cpu.completeIO(value: 0x2233)
    XCTAssertEqual(try runToHalt(m).rax & 0xFFFF, 0x2233)
  }

  /// A fault raised by the restarted instruction drops its completed MMIO value.
  func testFaultDropsPendingCompletion() throws {
    // mov ebx,0xD0000000 ; mov eax,fs:[rbx] ; hlt      #GP handler: mov eax,[rbx] ; hlt
    let m = try machine64([0xBB, 0, 0, 0, 0xD0, 0x64, 0x8B, 0x03, 0xF4])
    try m.load([0x8B, 0x03, 0xF4], at: UnitTests.handlerBase + 13 * 16)
    let read = VMExit.mmio(
      MMIOAccess(address: GuestPhysicalAddress(0xD000_0000), size: 4, isWrite: false))
    XCTAssertEqual(try m.cpu.run(), read)
    m.cpu.completeIO(value: 0x77)
    // The restarted load now faults (#GP: non-canonical FS-relative address).
    var s = try m.cpu.getState()
    s.special.fs.base = 0x8000_0000_0000_0000
    try m.cpu.setState(s)
    XCTAssertEqual(try m.cpu.run(), read)  // the handler's read exits for its own value
    m.cpu.completeIO(value: 0x99)
    XCTAssertEqual(try runToHalt(m).rax, 0x99)
  }
}

/// An NMI source for the interpreter: `pending` until the CPU takes it.
final class NMIInput: InterruptInput {
  var pending = false
  var taken = 0
  var hasPendingInterrupt: Bool { false }
  func acknowledgeInterrupt() -> UInt8? { nil }
  var hasPendingNMI: Bool { pending }
  func acknowledgeNMI() {
    pending = false
    taken += 1
  }
}

extension UnitTests {
  /// NMIs arrive with IF clear, through vector 2, and a second one waits for the IRET.
  func testNMIDeliveredThroughVector2AndBlockedUntilIRET() throws {
    // cli ; out 0x81,al ; hlt          NMI handler: inc ebx ; out 0x80,al ; iretq
    let m = try machine64([0xFA, 0xE6, 0x81, 0xF4])
    try m.load([0xFF, 0xC3, 0xE6, 0x80, 0x48, 0xCF], at: UnitTests.handlerBase + 2 * 16)
    let nmi = NMIInput()
    m.cpu.interruptInput = nmi
    nmi.pending = true
    func out(_ p: UInt16) -> VMExit { .portIO(PortIOAccess(port: p, size: 1, direction: .out)) }
    XCTAssertEqual(try m.cpu.run(), out(0x80))  // in the handler
    nmi.pending = true  // a second NMI while the first is in service
    XCTAssertEqual(try m.cpu.run(), out(0x81), "blocked until IRET")
    XCTAssertEqual(try regs(m).rbx, 1)
    XCTAssertEqual(try m.cpu.run(), out(0x80), "delivered after IRET, IF still clear")
    XCTAssertEqual(try runToHalt(m).rbx, 2)
    XCTAssertEqual(nmi.taken, 2)
  }
}

extension UnitTests {
  /// A host that cannot map the decode cache gets an error, not a crash.
  func testDecodeCacheMapFailureIsAnError() {
    XCTAssertThrowsError(try DecodeCache(map: { _ in nil })) { e in
      guard case EngineError.unavailable(let why) = e else {
        return XCTFail("unexpected error \(e)")
      }
      XCTAssertTrue(why.contains("decode cache"), why)
    }
  }
}

/// Cheap CPU fixes from the kvm-unit-tests findings (../shared/findings/kvm-unit-tests.md).
extension UnitTests {
  /// A fault pushes RFLAGS with RF set (idt_test); a trap such as INT3 does not.
  func testFaultFramePushesRF() throws {
    let m = try machine64([0x0F, 0x0B, 0xF4])  // ud2
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax, 6)
    XCTAssertNotEqual(try read64(m, g.rsp + 16) & RFLAGS.rf, 0)
    let m2 = try machine64([0xCC, 0xF4])  // int3
    let g2 = try runToHalt(m2)
    XCTAssertEqual(g2.rax, 3)
    XCTAssertEqual(try read64(m2, g2.rsp + 16) & RFLAGS.rf, 0)
  }

  /// IA32_SPEC_CTRL and IA32_PRED_CMD #GP when CPUID does not offer them (msr test).
  func testSpeculationMSRsNeedTheirCPUIDBits() throws {
    let f7 = CPUIDPolicy.default.lookup(leaf: 7, subleaf: 0)
    let e8 = CPUIDPolicy.default.lookup(leaf: 0x8000_0008, subleaf: 0)
    try XCTSkipIf(
      f7.edx & (1 << 26 | 1 << 27 | 1 << 31) != 0 || e8.ebx & (1 << 12 | 1 << 14) != 0,
      "the default policy offers IBRS/IBPB")
    // mov ecx,0x48 ; rdmsr ; hlt
    XCTAssertEqual(try runToHalt(try machine64([0xB9, 0x48, 0, 0, 0, 0x0F, 0x32, 0xF4])).rax, 13)
    // mov ecx,0x49 ; mov eax,1 ; xor edx,edx ; wrmsr ; hlt
    let wr = try machine64([0xB9, 0x49, 0, 0, 0, 0xB8, 1, 0, 0, 0, 0x31, 0xD2, 0x0F, 0x30, 0xF4])
    XCTAssertEqual(try runToHalt(wr).rax, 13)
  }

  /// RDPMC: an existing counter reads 0, a missing one #GPs (pmu test).
  func testRDPMCIndexChecked() throws {
    // mov ecx,1 ; mov eax,-1 ; rdpmc ; hlt   (AMD's legacy counters 0-3 exist)
    let ok = try machine64([0xB9, 1, 0, 0, 0, 0xB8, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x33, 0xF4])
    XCTAssertEqual(try runToHalt(ok).rax, 0)
    // mov ecx,0x40 ; rdpmc ; hlt
    let bad = try machine64([0xB9, 0x40, 0, 0, 0, 0x0F, 0x33, 0xF4])
    XCTAssertEqual(try runToHalt(bad).rax, 13)
  }
}

/// A platform whose CR8 is an APIC TPR class.
final class TPRPlatform: PlatformHooks {
  var tprClass: UInt8 = 0xF
  func readTSC() -> UInt64 { 0 }
  func writeTSC(_ value: UInt64) {}
  func readMSR(_ index: UInt32) -> UInt64? { nil }
  func writeMSR(_ index: UInt32, value: UInt64) -> Bool { false }
  var taskPriorityClass: UInt8? { tprClass }
  func setTaskPriorityClass(_ value: UInt8) { tprClass = value }
}

extension UnitTests {
  /// MOV from/to CR8 reads and writes the platform's TPR class.
  func testCR8IsTheAPICTaskPriority() throws {
    // mov rax,cr8 ; mov ecx,2 ; mov cr8,rcx ; hlt
    let m = try machine64([0x44, 0x0F, 0x20, 0xC0, 0xB9, 2, 0, 0, 0, 0x44, 0x0F, 0x22, 0xC1, 0xF4])
    let p = TPRPlatform()
    m.cpu.platform = p
    XCTAssertEqual(try runToHalt(m).rax, 0xF)
    XCTAssertEqual(p.tprClass, 2)
  }
}

extension UnitTests {
  /// Ring-3 descriptors (0x23 data, 0x2B 64-bit code) and user-accessible pages
  /// for the first 2 MiB, added to `machine64`'s machine.
  func addUserMode(_ m: TestMachine) throws {
    try m.memory.write(GuestPhysicalAddress(0x60000 + 4 * 8), value: UInt64(0x00CF_F200_0000_FFFF))
    try m.memory.write(GuestPhysicalAddress(0x60000 + 5 * 8), value: UInt64(0x00AF_FA00_0000_FFFF))
    try m.memory.write(GuestPhysicalAddress(0x70000), value: UInt64(0x71000 | 7))
    try m.memory.write(GuestPhysicalAddress(0x71000), value: UInt64(0x72000 | 7))
    try setPDE(m, 0, 0x87)
    var s = try m.cpu.getState()
    s.special.gdt.limit = 6 * 8 - 1
    try m.cpu.setState(s)
  }

  /// IRET to ring 3 nulls a DPL-0 GS selector but keeps its 64-bit base, as
  /// hardware and QEMU do (kvm-unit-tests' emulator and debug tests).
  func testIRETToRing3KeepsGSBase() throws {
    let m = try machine64(
      [
        0xB9, 0x01, 0x01, 0x00, 0xC0,  // mov ecx,IA32_GS_BASE
        0xB8, 0x00, 0x50, 0x34, 0x12,  // mov eax,0x12345000
        0x31, 0xD2, 0x0F, 0x30,  // xor edx,edx ; wrmsr
        0x6A, 0x23, 0x68, 0x00, 0x80, 0x00, 0x00,  // push ss ; push rsp
        0x68, 0x02, 0x30, 0x00, 0x00, 0x6A, 0x2B,  // push rflags (IOPL 3) ; push cs
        0x68, 0x23, 0x00, 0x01, 0x00, 0x48, 0xCF,  // push 0x10023 ; iretq
        0xE6, 0x80,  // 0x10023, ring 3: out 0x80,al
      ])
    try addUserMode(m)
    XCTAssertEqual(
      try m.cpu.run(), .portIO(PortIOAccess(port: 0x80, size: 1, direction: .out)))
    let s = try m.cpu.getState().special
    XCTAssertEqual(s.cs.selector, 0x2B)
    XCTAssertEqual(s.gs.selector, 0, "the DPL-0 selector is nulled")
    XCTAssertEqual(s.gs.base, 0x1234_5000, "the base stays")
  }
}

extension UnitTests {
  /// SYSCALL with TF set and masked by FMASK takes no single-step trap in
  /// ring 0 (kvm-unit-tests' syscall test).
  func testSyscallWithMaskedTFTakesNoSingleStep() throws {
    var code: [UInt8] = [
      0xB9, 0x82, 0x00, 0x00, 0xC0, 0xB8, 0x40, 0x00, 0x01, 0x00,  // LSTAR = 0x10040
      0x31, 0xD2, 0x0F, 0x30,  // xor edx,edx ; wrmsr
      0xB9, 0x84, 0x00, 0x00, 0xC0, 0xB8, 0x00, 0x01, 0x00, 0x00, 0x0F, 0x30,  // FMASK = TF
      0x9C, 0x48, 0x81, 0x0C, 0x24, 0x00, 0x01, 0x00, 0x00, 0x9D,  // pushfq ; or TF ; popfq
      0x0F, 0x05,  // syscall
    ]
    code += [UInt8](repeating: 0x90, count: 0x40 - code.count)
    code += [0xB8, 0x55, 0x00, 0x00, 0x00, 0xF4]  // 0x10040: mov eax,0x55 ; hlt
    let g = try runToHalt(try machine64(code))
    XCTAssertEqual(g.rax, 0x55, "no #DB (vector 1) after SYSCALL")
  }

  /// SYSRET that sets TF traps before the first user instruction, as on hardware.
  func testSysretSettingTFTrapsBeforeTheNextInstruction() throws {
    var code: [UInt8] = [
      0xB9, 0x81, 0x00, 0x00, 0xC0, 0x31, 0xC0,  // mov ecx,STAR ; xor eax,eax
      0xBA, 0x08, 0x00, 0x18, 0x00, 0x0F, 0x30,  // STAR: kernel CS 0x08, user base 0x18
      0x41, 0xBB, 0x02, 0x31, 0x00, 0x00,  // mov r11d,0x3102 (TF, IOPL 3)
      0xB9, 0x30, 0x00, 0x01, 0x00, 0x48, 0x0F, 0x07,  // mov ecx,0x10030 ; sysretq
    ]
    code += [UInt8](repeating: 0x90, count: 0x30 - code.count)
    code += [0xE6, 0x80]  // 0x10030, ring 3: out 0x80,al
    let m = try machine64(code)
    try addUserMode(m)
    // A TSS whose RSP0 takes the #DB from ring 3.
    try m.memory.write(GuestPhysicalAddress(0x61004), value: UInt64(0x90000))
    var s = try m.cpu.getState()
    s.special.tr = SegmentRegister(selector: 0x30, base: 0x61000, limit: 0x67, type: 0xB, s: false)
    try m.cpu.setState(s)
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax, 1, "#DB")
    XCTAssertEqual(try read64(m, g.rsp), 0x10030, "before the user instruction")
    XCTAssertEqual(try read64(m, g.rsp + 8), 0x2B)
  }
}

extension UnitTests {
  /// An AMD CPU has PERF_CTL0-3/PERF_CTR0-3 at 0xC0010000-7 (kvm-unit-tests'
  /// library clears them at start-up); RDPMC reads the same 48-bit counters.
  func testAMDLegacyCounterMSRs() throws {
    try XCTSkipIf(
      CPUIDPolicy.default.lookup(leaf: 0, subleaf: 0).ebx != 0x6874_7541,
      "the default policy is not AuthenticAMD")
    let m = try machine64([
      0xB9, 0x00, 0x00, 0x01, 0xC0, 0x31, 0xC0, 0x31, 0xD2, 0x0F, 0x30,  // PERF_CTL0 = 0
      0xB9, 0x05, 0x00, 0x01, 0xC0, 0xB8, 0x34, 0x12, 0x00, 0x00,  // PERF_CTR1 =
      0xBA, 0x77, 0x00, 0x01, 0x00, 0x0F, 0x30,  //   0x1_0077_0000_1234 (48 bits kept)
      0xB9, 0x01, 0x00, 0x00, 0x00, 0x0F, 0x33, 0xF4,  // mov ecx,1 ; rdpmc ; hlt
    ])
    let g = try runToHalt(m)
    XCTAssertEqual(g.rax, 0x1234)
    XCTAssertEqual(g.rdx, 0x77)
  }
}

extension UnitTests {
  /// Single-stepping an instruction that exits for port I/O traps once it has
  /// completed, before the next instruction (kvm-unit-tests' debug test).
  func testSingleStepTrapsAfterPortIOExit() throws {
    for (io, completes) in [([UInt8](arrayLiteral: 0xE6, 0x80), false), ([0xE4, 0x80], true)] {
      // pushfq ; or qword [rsp],TF ; popfq ; OUT/IN at 0x1000A ; mov eax,0x55 ; hlt
      let code: [UInt8] =
        [0x9C, 0x48, 0x81, 0x0C, 0x24, 0x00, 0x01, 0x00, 0x00, 0x9D] + io
        + [0xB8, 0x55, 0x00, 0x00, 0x00, 0xF4]
      let m = try machine64(code)
      guard case .portIO = try m.cpu.run() else { return XCTFail("no port exit") }
      if completes { m.cpu.completeIO(value: 0x12) }
      let g = try runToHalt(m)
      XCTAssertEqual(g.rax, 1, "#DB")
      XCTAssertEqual(try read64(m, g.rsp), 0x1000C, "trap right after the I/O instruction")
    }
  }
}

extension UnitTests {
  /// LTR and LLDT #GP(selector) on a system descriptor whose 64-bit base is not canonical.
  func testLTRAndLLDTRefuseNonCanonicalBase() throws {
    for (type, op) in [(UInt64(9), UInt8(0xD8)), (2, 0xD0)] {  // ltr ax / lldt ax
      let m = try machine64([0x66, 0xB8, 0x20, 0x00, 0x0F, 0x00, op, 0xF4])  // mov ax,0x20
      try m.memory.write(GuestPhysicalAddress(0x60020), value: 0x0000_8000_0000_0067 | type << 40)
      try m.memory.write(GuestPhysicalAddress(0x60028), value: UInt64(0xAAAA_AAAA))
      var s = try m.cpu.getState()
      s.special.gdt.limit = 6 * 8 - 1
      try m.cpu.setState(s)
      let g = try runToHalt(m)
      XCTAssertEqual(g.rax, 13, "#GP")
      XCTAssertEqual(try read64(m, g.rsp), 0x20, "error code: the selector")
    }
  }
}

extension UnitTests {
  /// CMPS with both operands in MMIO needs two completed reads: the restart
  /// replays the first and exits for the second, then completes (emulator test).
  func testTwoMMIOReadsInOneInstructionComplete() throws {
    func read(_ a: UInt64) -> VMExit {
      .mmio(MMIOAccess(address: GuestPhysicalAddress(a), size: 1, isWrite: false))
    }
    for (second, equal) in [(UInt64(0x42), UInt64(1)), (0x43, 0)] {
      // mov esi,0xD0000000 ; mov edi,0xD0001000 ; cmpsb ; sete al ; hlt
      let m = try machine64([
        0xBE, 0, 0, 0, 0xD0, 0xBF, 0, 0x10, 0, 0xD0, 0xA6, 0x0F, 0x94, 0xC0, 0xF4,
      ])
      XCTAssertEqual(try m.cpu.run(), read(0xD000_0000))
      m.cpu.completeIO(value: 0x42)
      XCTAssertEqual(try m.cpu.run(), read(0xD000_1000))
      m.cpu.completeIO(value: second)
      let g = try runToHalt(m)
      XCTAssertEqual(g.rax & 0xFF, equal)
      XCTAssertEqual(g.rsi, 0xD000_0001)
    }
  }
}
