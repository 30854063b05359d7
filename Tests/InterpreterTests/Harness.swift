import Engine
import Foundation
import Memory
import X86

@testable import Interpreter

/// A minimal machine for interpreter tests: RAM, one CPU, a UART that only
/// collects output, isa-debug-exit at 0xF4, and an MMIO sink.
final class TestMachine {
  let memory: GuestMemory
  let cpu: InterpreterCPU
  var serial = ""
  var exitCode: UInt32?
  var exits: [VMExit] = []
  var mmioWrites: [MMIOAccess] = []
  var inValue: UInt64 = 0

  init(
    ramMiB: UInt64 = 128, options: InterpreterOptions = .init(), cpuid: CPUIDPolicy = .default
  ) throws {
    memory = try GuestMemory(size: ramMiB << 20)
    cpu = try InterpreterCPU(memory: memory, cpuid: cpuid, options: options)
  }

  /// Flat 32-bit protected mode, paging off.
  func setProtectedMode32(rip: UInt64) throws {
    var s = CPUState()
    s.general.rip = rip
    s.special.cs = .flatCode32(selector: 0x08)
    s.special.ds = .flatData(selector: 0x10)
    s.special.es = .flatData(selector: 0x10)
    s.special.ss = .flatData(selector: 0x10)
    s.special.fs = .flatData(selector: 0x10)
    s.special.gs = .flatData(selector: 0x10)
    s.special.cr0 = CR0.pe | CR0.et
    try cpu.setState(s)
  }

  /// Long mode with an identity map of the low 4 GiB (2 MiB pages) at 0x70000.
  func setLongMode(rip: UInt64, rsp: UInt64 = 0x80000) throws {
    let pml4: UInt64 = 0x70000
    let pdpt: UInt64 = 0x71000
    let pd: UInt64 = 0x72000
    try memory.write(GuestPhysicalAddress(pml4), value: pdpt | 3)
    for i in 0..<4 {
      try memory.write(
        GuestPhysicalAddress(pdpt + UInt64(i) * 8), value: (pd + UInt64(i) * 0x1000) | 3)
    }
    for i in 0..<2048 {
      try memory.write(GuestPhysicalAddress(pd + UInt64(i) * 8), value: (UInt64(i) << 21) | 0x83)
    }
    // GDT at 0x60000: null, code64 (0x08), data (0x10), code32 (0x18).
    let gdt: [UInt64] = [0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF, 0x00CF_9A00_0000_FFFF]
    for (i, d) in gdt.enumerated() {
      try memory.write(GuestPhysicalAddress(0x60000 + UInt64(i) * 8), value: d)
    }
    var s = CPUState()
    s.general.rip = rip
    s.general.rsp = rsp
    s.special.cs = .code64(selector: 0x08)
    s.special.ds = .flatData(selector: 0x10)
    s.special.es = .flatData(selector: 0x10)
    s.special.ss = .flatData(selector: 0x10)
    s.special.fs = .flatData(selector: 0x10)
    s.special.gs = .flatData(selector: 0x10)
    s.special.gdt = DescriptorTableRegister(base: 0x60000, limit: 31)
    s.special.cr0 = CR0.pe | CR0.et | CR0.pg | CR0.wp
    s.special.cr3 = pml4
    s.special.cr4 = CR4.pae
    s.special.efer = EFER.lme | EFER.lma | EFER.sce | EFER.nxe
    try cpu.setState(s)
  }

  func load(_ bytes: [UInt8], at gpa: UInt64) throws {
    try memory.write(GuestPhysicalAddress(gpa), bytes: bytes)
  }

  /// Loads a multiboot ELF32 image and enters it as a multiboot loader would.
  func bootMultiboot(path: String, cmdline: String = "") throws {
    let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    func u32(_ o: Int) -> UInt32 {
      UInt32(data[o]) | UInt32(data[o + 1]) << 8 | UInt32(data[o + 2]) << 16 | UInt32(data[o + 3])
        << 24
    }
    func u16(_ o: Int) -> Int { Int(data[o]) | Int(data[o + 1]) << 8 }
    precondition(data[4] == 1, "not ELF32")
    let entry = u32(0x18)
    let phoff = Int(u32(0x1C))
    let phentsize = u16(0x2A)
    let phnum = u16(0x2C)
    for i in 0..<phnum {
      let p = phoff + i * phentsize
      guard u32(p) == 1 else { continue }
      let off = Int(u32(p + 4))
      let paddr = UInt64(u32(p + 12))
      let filesz = Int(u32(p + 16))
      let memsz = Int(u32(p + 20))
      try memory.write(GuestPhysicalAddress(paddr), bytes: Array(data[off..<off + filesz]))
      if memsz > filesz {
        try memory.fill(
          GuestPhysicalAddress(paddr + UInt64(filesz)), count: memsz - filesz, value: 0)
      }
    }
    // Multiboot info at 0x8000, command line at 0x9000.
    let mbi: UInt64 = 0x8000
    try memory.fill(GuestPhysicalAddress(mbi), count: 128, value: 0)
    try memory.write(GuestPhysicalAddress(mbi), value: UInt32(1 | 4))
    try memory.write(GuestPhysicalAddress(mbi + 4), value: UInt32(640))
    try memory.write(
      GuestPhysicalAddress(mbi + 8), value: UInt32((memory.ramSize - (1 << 20)) >> 10))
    try memory.write(GuestPhysicalAddress(mbi + 16), value: UInt32(0x9000))
    try memory.write(GuestPhysicalAddress(0x9000), bytes: Array(cmdline.utf8) + [0])
    try setProtectedMode32(rip: UInt64(entry))
    var st = try cpu.getState()
    st.general.rax = 0x2BAD_B002
    st.general.rbx = mbi
    try cpu.setState(st)
  }

  enum Stop: Equatable {
    case debugExit(UInt32)
    case other(VMExit)
  }

  /// Runs until the guest writes the debug-exit port or another exit ends the run.
  @discardableResult
  func run(maxExits: Int = 10_000_000) throws -> Stop {
    for _ in 0..<maxExits {
      let e = try cpu.run()
      switch e {
      case .portIO(let io):
        if io.direction == .out {
          if io.port == 0x3F8 {
            serial.unicodeScalars.append(Unicode.Scalar(UInt8(truncatingIfNeeded: io.value)))
          } else if io.port == 0xF4 {
            exitCode = io.value
            return .debugExit(io.value)
          }
        } else {
          let v: UInt64 = io.port == 0x3FD ? 0x60 : inValue
          cpu.completeIO(value: v)
        }
      case .mmio(let m):
        if m.isWrite { mmioWrites.append(m) } else { cpu.completeIO(value: 0x1234_5678) }
      case .hypercall:
        exits.append(e)
        return .other(e)
      default:
        exits.append(e)
        return .other(e)
      }
    }
    return .other(.interrupted)
  }

}

extension TestMachine {
  /// 64-bit IDT whose vector v handler is `mov rax, v ; hlt`.
  func installHaltingIDT(idtBase: UInt64, handlerBase: UInt64) throws {
    for v in 0..<256 {
      let h = handlerBase + UInt64(v) * 16
      try load([0x48, 0xC7, 0xC0, UInt8(v), 0, 0, 0, 0xF4], at: h)
      let lo = (h & 0xFFFF) | (0x08 << 16) | (UInt64(0x8E) << 40) | ((h >> 16) & 0xFFFF) << 48
      try memory.write(GuestPhysicalAddress(idtBase + UInt64(v) * 16), value: lo)
      try memory.write(
        GuestPhysicalAddress(idtBase + UInt64(v) * 16 + 8), value: h >> 32)
    }
    var s = try cpu.getState()
    s.special.idt = DescriptorTableRegister(base: idtBase, limit: 4095)
    try cpu.setState(s)
  }
}
