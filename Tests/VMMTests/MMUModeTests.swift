import Engine
import Foundation
import Interpreter
import Memory
import TestSupport
import X86
import XCTest

@testable import VMM

/// `--mmu direct|nested|shadow|paravirt`: every test guest behaves the same in
/// every mode, and the VMM's MMU code keeps its promises (lazy nested tables,
/// GPA != HPA, exact A/D bits, emulated page-table writes, the shadow cap, PV
/// validation, containment of bad CR3 / PTE values).
final class MMUModeTests: XCTestCase {
  static let modes: [MMUMode] = [.direct, .nested, .shadow]

  func boot(
    _ guest: String, cmdline: String = "", mode: MMUMode, memory: UInt64 = 64 << 20,
    shadowCap: Int = 4096
  ) throws -> (MachineOutcome, String, [String: UInt64]) {
    var c = MachineConfig(
      kernel: try GuestImages.bytes(guest), kernelName: guest, engine: .interpreter)
    c.commandLine = cmdline
    c.memorySize = memory
    c.timeout = 120
    c.mmuMode = mode
    if mode == .shadow { c.shadowPageCap = shadowCap }
    let console = ConsoleOutput(capturing: ())
    let m = try Machine(config: c, console: console)
    let o = m.run()
    return (o, console.capturedText, m.statistics())
  }

  func checkSameInEveryMode(
    _ guest: String, cmdline: String = "", last: String, memory: UInt64 = 64 << 20
  )
    throws
  {
    var reference: (MachineOutcome, String)?
    for mode in Self.modes {
      let (o, out, _) = try boot(guest, cmdline: cmdline, mode: mode, memory: memory)
      XCTAssertEqual(o, .debugExit(status: 1), "\(guest) in \(mode.name): \(o)\n\(out)")
      XCTAssertTrue(out.contains(last), "\(guest) in \(mode.name):\n\(out)")
      if let (ro, rout) = reference {
        XCTAssertEqual(o, ro, "\(guest): \(mode.name) vs direct")
        XCTAssertEqual(out, rout, "\(guest): \(mode.name) output differs from direct")
      } else {
        reference = (o, out)
      }
    }
  }

  // MARK: Guests in every mode

  func testHello() throws { try checkSameInEveryMode("hello.elf", last: "Hello from SwiftVMM") }
  func testHello64() throws { try checkSameInEveryMode("hello64.elf", last: "entry: long mode") }
  func testExceptions() throws {
    try checkSameInEveryMode("exceptions.elf", last: "PASS exceptions")
  }
  func testIDTAndIST() throws { try checkSameInEveryMode("idt_ist.elf", last: "PASS idt_ist") }
  func testPaging() throws { try checkSameInEveryMode("paging.elf", last: "PASS paging") }
  func testSyscall() throws { try checkSameInEveryMode("syscall.elf", last: "PASS syscall") }
  func testSoftInt() throws { try checkSameInEveryMode("softint.elf", last: "PASS softint") }
  func testModes() throws { try checkSameInEveryMode("modes.elf", last: "PASS modes") }
  func testPTTorture() throws {
    try checkSameInEveryMode("pt_torture.elf", last: "PASS pt_torture")
  }
  func testPTTorture64() throws {
    try checkSameInEveryMode("pt_torture64.elf", last: "PASS pt_torture")
  }
  func testPTSelfWrite() throws {
    try checkSameInEveryMode("pt_selfwrite.elf", last: "PASS pt_selfwrite")
  }
  func testTLBThrash4K() throws {
    try checkSameInEveryMode("tlb_thrash.elf", cmdline: "mb=8 steps=20000", last: "result=")
  }
  func testTLBThrash2M() throws {
    try checkSameInEveryMode(
      "tlb_thrash.elf", cmdline: "mb=8 steps=20000 pages=2m", last: "result=")
  }

  /// The memory-virtualization guests print exactly what they print under QEMU TCG.
  func testMMUGuestsMatchQEMU() throws {
    for (guest, cmdline, first) in [
      ("pt_torture.elf", "", "pt_torture"), ("pt_selfwrite.elf", "", "pt_selfwrite"),
      ("tlb_thrash.elf", "mb=8 steps=20000", "tlb_thrash"),
    ] {
      let kernel = try GuestImages.path(guest)
      let (_, qemu) = try QEMUCrossCheckTests.qemuOutput(kernel, firstLine: first, cmdline: cmdline)
      XCTAssertFalse(qemu.isEmpty)
      for mode in [MMUMode.nested, .shadow] {
        let (_, out, _) = try boot(
          guest, cmdline: "\(kernel) \(cmdline)", mode: mode, memory: 128 << 20)
        let ours = out.range(of: first).map { String(out[$0.lowerBound...]) } ?? out
        XCTAssertEqual(ours, qemu, "\(guest) in \(mode.name) vs QEMU")
      }
    }
  }

  // MARK: Paravirt

  func testPVMMUPassesInParavirtMode() throws {
    for guest in ["pv_mmu.elf", "pv_mmu64.elf"] {
      let (o, out, s) = try boot(guest, mode: .paravirt)
      XCTAssertEqual(o, .debugExit(status: 1), out)
      XCTAssertTrue(out.contains("PASS pv_mmu"), out)
      XCTAssertGreaterThan(s["mmu.exits.hypercalls"] ?? 0, 10)
      XCTAssertGreaterThan(s["mmu.pv.rejected"] ?? 0, 5)
    }
  }

  func testPVMMUIsNotOfferedInOtherModes() throws {
    for mode in Self.modes {
      let (o, out, _) = try boot("pv_mmu.elf", mode: mode)
      XCTAssertEqual(o, .debugExit(status: 7), "\(mode.name): \(out)")
      XCTAssertTrue(out.contains("PV MMU not offered"), out)
    }
  }

  func testParavirtRefusesANonPVGuest() throws {
    let (o, _, _) = try boot("hello.elf", mode: .paravirt)
    guard case .guestFailure(let why) = o else { return XCTFail("\(o)") }
    XCTAssertTrue(why.contains("HC_PV_HELLO"), why)
  }

  func testKVMRefusesShadowAndParavirt() throws {
    for mode in [MMUMode.shadow, .paravirt, .direct] {
      var c = MachineConfig(
        kernel: try GuestImages.bytes("hello.elf"), kernelName: "hello", engine: .kvm)
      c.mmuMode = mode
      XCTAssertThrowsError(try Machine(config: c, console: ConsoleOutput(capturing: ()))) { e in
        XCTAssertTrue("\(e)".contains("needs the interpreter"), "\(e)")
      }
    }
  }

  // MARK: Nested

  func testNestedTablesFillLazilyAndGPAIsNotHPA() throws {
    let (o, _, s) = try boot("hello.elf", mode: .nested)
    XCTAssertEqual(o, .debugExit(status: 1))
    let mapped = s["mmu.nested.mapped_pages"] ?? 0
    XCTAssertGreaterThan(mapped, 0)
    XCTAssertLessThan(mapped, (64 << 20) / 4096 / 4, "only touched pages are mapped")
    XCTAssertEqual(s["mmu.exits.nested_faults"], mapped + (s["mmu.nested.mmio_pages"] ?? 0))
    // A full 2D walk costs more than 4 references per walk.
    XCTAssertGreaterThan(s["mmu.nested_refs"] ?? 0, 4 * (s["mmu.page_walks"] ?? 0))

    var c = MachineConfig(
      kernel: try GuestImages.bytes("hello.elf"), kernelName: "hello", engine: .interpreter)
    c.memorySize = 64 << 20
    c.mmuMode = .nested
    let m = try Machine(config: c, console: ConsoleOutput(capturing: ()))
    var differ = 0
    for g in stride(from: UInt64(0), to: 64 << 20, by: 1 << 20) {
      if m.memory.hostPhysical(GuestPhysicalAddress(g))!.rawValue != g { differ += 1 }
    }
    XCTAssertGreaterThan(differ, 60, "scattered layout: GPA != HPA")
    _ = m.run()
    let report = m.translate(0x100000)
    XCTAssertTrue(report.contains("nested L1 entry"), report)
    XCTAssertTrue(report.contains("HPA = 0x"), report)
  }

  // MARK: Bare CPU + VMM MMU, for the precise cases

  /// A long-mode CPU with 4 KiB-page tables for the low 4 MiB at 0x10000..,
  /// running `code` at 0x1000, with the VMM's MMU for `mode`.
  final class Bare {
    let memory: GuestMemory
    let cpu: InterpreterCPU
    let mmu: MMUVirtualization
    let hypercalls = HypercallTable()
    static let pml4: UInt64 = 0x10000
    static let pdpt: UInt64 = 0x11000
    static let pd: UInt64 = 0x12000
    static let pt: UInt64 = 0x13000  // 2 PTs: 0x13000, 0x14000

    init(mode: MMUMode, code: [UInt8], regs: [Int: UInt64] = [:]) throws {
      let pool = try HostFramePool(bytes: (16 << 20) + 4096 * 512)
      memory = try GuestMemory(
        pool: pool, regions: GuestMemory.pcRegions(size: 16 << 20),
        layout: mode == .direct ? .contiguous : .scattered(seed: 7))
      try memory.write(GuestPhysicalAddress(Self.pml4), value: Self.pdpt | 7)
      try memory.write(GuestPhysicalAddress(Self.pdpt), value: Self.pd | 7)
      try memory.write(GuestPhysicalAddress(Self.pd), value: Self.pt | 7)
      try memory.write(GuestPhysicalAddress(Self.pd + 8), value: (Self.pt + 0x1000) | 7)
      for i in 0..<1024 {
        try memory.write(
          GuestPhysicalAddress(Self.pt + UInt64(i) * 8), value: (UInt64(i) << 12) | 3)
      }
      try memory.write(GuestPhysicalAddress(0x1000), bytes: code)
      var o = InterpreterOptions()
      o.mmuMode = mode
      o.maxInstructions = 10_000
      cpu = try InterpreterCPU(memory: memory, cpuid: .default, options: o)
      var s = CPUState()
      s.general.rip = 0x1000
      s.general.rsp = 0x8000
      for (r, v) in regs { s.general[r] = v }
      s.special.cs = .code64(selector: 0x08)
      s.special.ds = .flatData(selector: 0x10)
      s.special.ss = .flatData(selector: 0x10)
      s.special.es = .flatData(selector: 0x10)
      s.special.cr0 = CR0.pe | CR0.pg | CR0.et | CR0.wp
      s.special.cr4 = CR4.pae
      s.special.cr3 = Self.pml4
      s.special.efer = EFER.lme | EFER.lma | EFER.nxe
      try cpu.setState(s)
      mmu = try MMUVirtualization(
        cpu: cpu, memory: memory, has1G: false, shadowCap: 64, nestedWalkCache: false)
      try mmu.registerHypercalls(in: hypercalls)
    }

    /// Runs until an exit other than a hypercall (MMU events go to the hooks inside
    /// `cpu.run()`; an MMU stop message arrives as `.shutdown`). The second value
    /// is that message.
    func run() throws -> (VMExit?, String?) {
      while true {
        let e = try cpu.run()
        switch e {
        case .hypercall(let nr, let args):
          cpu.setHypercallResult(hypercalls.call(number: nr, arguments: args))
        case .shutdown(let why):
          return (e, why)
        default:
          return (e, nil)
        }
      }
    }

    func pte(_ gva: UInt64) throws -> UInt64 {
      try memory.read(GuestPhysicalAddress(Self.pt + (gva >> 12) * 8), as: UInt64.self)
    }
  }

  /// Shadow A/D: a read sets A only and leaves the shadow leaf read-only; the
  /// first write exits, sets D and makes the leaf writable.
  func testShadowADBitsAreExact() throws {
    // mov rax, [0x200000]; out 0x80, al; mov [0x201000], rax; hlt
    let code: [UInt8] = [
      0x48, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00, 0xE6, 0x80,
      0x48, 0x89, 0x04, 0x25, 0x00, 0x10, 0x20, 0x00, 0xF4,
    ]
    let b = try Bare(mode: .shadow, code: code)
    XCTAssertEqual(try b.run().0, .portIO(PortIOAccess(port: 0x80, size: 1, direction: .out)))
    XCTAssertEqual(try b.pte(0x200000) & (PTE.accessed | PTE.dirty), PTE.accessed)
    let leaf = b.mmu.shadow!.chain(0x200000).last!
    XCTAssertEqual(leaf.level, 1)
    XCTAssertEqual(leaf.value & PTE.writable, 0, "clean page: shadow leaf read-only")
    XCTAssertEqual(try b.pte(0x201000) & PTE.accessed, 0)
    XCTAssertEqual(try b.run().0, .halt)
    XCTAssertEqual(try b.pte(0x201000) & (PTE.accessed | PTE.dirty), PTE.accessed | PTE.dirty)
    XCTAssertEqual(try b.pte(0x200000) & PTE.dirty, 0)
    XCTAssertNotEqual(b.mmu.shadow!.chain(0x201000).last!.value & PTE.writable, 0)
  }

  /// A store to a shadowed guest page table exits; the VMM performs it and zaps the entry.
  func testShadowEmulatesPageTableWrites() throws {
    // mov rax, [0x200000] (shadows the PT); mov [rdi], rsi (rewrite the PTE); mov rax, [0x200000]; hlt
    let code: [UInt8] = [
      0x48, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00,
      0x48, 0x89, 0x37,
      0x0F, 0x01, 0x3C, 0x25, 0x00, 0x00, 0x20, 0x00,  // invlpg [0x200000]
      0x48, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00, 0xF4,
    ]
    let pteAddr = Bare.pt + (0x200000 >> 12) * 8
    let b = try Bare(mode: .shadow, code: code, regs: [7: pteAddr, 6: 0x300000 | 3])
    try b.memory.write(GuestPhysicalAddress(0x200000), value: UInt64(0x1111))
    try b.memory.write(GuestPhysicalAddress(0x300000), value: UInt64(0x2222))
    XCTAssertEqual(try b.run().0, .halt)
    XCTAssertEqual(b.cpu.generalRegister(0), 0x2222)
    XCTAssertEqual(try b.pte(0x200000) & ~0x60, 0x300000 | 3)
    let s = b.mmu.statistics()
    XCTAssertEqual(s["mmu.exits.write_protect"], 1)
    XCTAssertEqual(s["mmu.shadow.emulated_writes"], 1)
    XCTAssertEqual(s["mmu.exits.invlpg"], 1)
  }

  /// The shadow cap: reaching it zaps everything and the guest still runs right.
  func testShadowCapZapsAndStaysCorrect() throws {
    let (o, out, s) = try boot("pt_torture.elf", mode: .shadow, shadowCap: 16)
    XCTAssertEqual(o, .debugExit(status: 1), out)
    XCTAssertTrue(out.contains("PASS pt_torture"), out)
    XCTAssertGreaterThan(s["mmu.shadow.zap_all"] ?? 0, 0)
    XCTAssertLessThanOrEqual(s["mmu.shadow.pages_peak"] ?? 99, 16)
  }

  // MARK: Containment: CR3 / PTEs at MMIO, nothing, beyond RAM

  /// CR3 at MMIO: the walk cannot read a table there; every mode stops the VM (MCE-like).
  func testCR3AtMMIOStopsTheVM() throws {
    // mov rax, 0xFEE00000; mov cr3, rax; mov rax, [0x200000]; hlt
    let code: [UInt8] = [
      0x48, 0xB8, 0x00, 0x00, 0xE0, 0xFE, 0, 0, 0, 0, 0x0F, 0x22, 0xD8,
      0x48, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00, 0xF4,
    ]
    for mode in Self.modes {
      let b = try Bare(mode: mode, code: code)
      let (e, why) = try b.run()
      let msg =
        why
        ?? {
          if case .shutdown(let r)? = e { return r } else { return "\(String(describing: e))" }
        }()
      XCTAssertTrue(msg.contains("non-RAM GPA 0xfee00"), "\(mode.name): \(msg)")
    }
  }

  /// A PTE pointing past RAM (inside the physical address width) is MMIO, as on
  /// hardware; one with address bits above MAXPHYADDR is a reserved-bit #PF.
  func testPTEBeyondRAMAndReservedBits() throws {
    // mov rax, [0x200000]; hlt
    let code: [UInt8] = [0x48, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00, 0xF4]
    for mode in Self.modes {
      let b = try Bare(mode: mode, code: code)
      try b.memory.write(
        GuestPhysicalAddress(Bare.pt + 0x200 * 8), value: UInt64(0x40_0000_0000 | 3))
      let (e, why) = try b.run()
      XCTAssertNil(why)
      XCTAssertEqual(
        e,
        .mmio(MMIOAccess(address: GuestPhysicalAddress(0x40_0000_0000), size: 8, isWrite: false)),
        mode.name)
    }
    for mode in Self.modes {
      let b = try Bare(mode: mode, code: code)
      // IDT is empty: the #PF becomes a triple fault; what matters is CR2 and no host access.
      try b.memory.write(
        GuestPhysicalAddress(Bare.pt + 0x200 * 8), value: UInt64(0x1_0000_0000_0000 | 3))
      let (e, _) = try b.run()
      guard case .shutdown(let r)? = e else {
        return XCTFail("\(mode.name): \(String(describing: e))")
      }
      XCTAssertTrue(r.contains("triple fault") || r.contains("#PF"), r)
      XCTAssertEqual(try b.cpu.getState().special.cr2, 0x200000, mode.name)
    }
  }

  /// Nested: a GPA beyond the physical address width is refused with a message.
  func testNestedRefusesGPAsBeyondThePhysicalAddressWidth() throws {
    let b = try Bare(mode: .nested, code: [0xF4])
    let why = b.mmu.nestedPageFault(gpa: 1 << 45, write: false, fetch: false)
    XCTAssertNotNil(why)
    XCTAssertTrue(why!.contains("beyond"), why!)
  }

  // MARK: PV validation

  func testPVValidation() throws {
    let b = try Bare(mode: .paravirt, code: [0xF4])
    let pv = b.mmu.pv!
    func call(_ nr: UInt64, _ a: UInt64 = 0, _ c: UInt64 = 0) -> Int64 {
      Int64(bitPattern: pv.handleHypercall(cpu: b.cpu, number: nr, args: [a, c, 0, 0]))
    }
    XCTAssertEqual(call(PVMMU.HC.pin, Bare.pt, 1), -1, "before HC_PV_HELLO")
    XCTAssertEqual(call(PVMMU.HC.hello, 2), -22)
    XCTAssertEqual(call(PVMMU.HC.hello, 1), 1)
    XCTAssertEqual(call(PVMMU.HC.pin, Bare.pt + 8, 1), -22, "misaligned")
    XCTAssertEqual(call(PVMMU.HC.pin, Bare.pt, 5), -22, "bad level")
    XCTAssertEqual(call(PVMMU.HC.pin, 64 << 20, 1), -14, "outside RAM")
    XCTAssertEqual(call(PVMMU.HC.pin, Bare.pd, 2), -1, "points at an unpinned PT")
    XCTAssertEqual(call(PVMMU.HC.pin, Bare.pt, 1), -1, "maps the page tables writable")
    XCTAssertEqual(b.cpu.generalRegister(2), 0x13, "index of the PTE mapping the PT itself")
    XCTAssertEqual(call(PVMMU.HC.newBasePtr, Bare.pml4), -1, "not pinned")
    XCTAssertEqual(call(0x5356_0099), -38)
  }
}
