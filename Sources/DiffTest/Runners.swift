import CNativeExec
import Engine
import Interpreter
import Memory
import X86

/// The outcome of one case on one side.
public struct Outcome {
  public enum Kind: Equatable {
    case completed
    case exception(vector: Int)
    case timeout
    case failure(String)
  }
  public var kind: Kind
  public var regs: [UInt64]
  public var rflags: UInt64
  public var faultRIP: UInt64 = 0
  /// CR2 / si_addr for #PF.
  public var faultAddress: UInt64 = 0
  /// Changed qwords (address, final value), and their total count and hash.
  public var diffs: [(address: UInt64, value: UInt64)]
  public var diffCount: Int
  public var diffHash: UInt64
  /// Final x87/MMX/SSE state (FXSAVE image).
  public var fx: [UInt8]

  init(_ r: nx_result) {
    var rr = r
    regs = withUnsafePointer(to: &rr.out.gpr) {
      $0.withMemoryRebound(to: UInt64.self, capacity: 16) {
        Array(UnsafeBufferPointer(start: $0, count: 16))
      }
    }
    rflags = r.out.rflags
    fx = withUnsafeBytes(of: rr.out.fx) { Array($0) }
    diffCount = Int(r.ndiffs)
    diffHash = r.diff_hash
    let shown = min(Int(r.ndiffs), Int(NX_MAX_DIFFS))
    diffs = withUnsafePointer(to: &rr.diffs) {
      $0.withMemoryRebound(to: nx_diff.self, capacity: Int(NX_MAX_DIFFS)) { p in
        (0..<shown).map { (p[$0].address, p[$0].value) }
      }
    }
    switch Int32(r.status) {
    case Int32(NX_OK): kind = .completed
    case Int32(NX_EXCEPTION):
      kind = .exception(vector: Int(r.vector))
      faultRIP = r.fault_rip
      faultAddress = r.fault_addr
    case Int32(NX_TIMEOUT): kind = .timeout
    default: kind = .failure("native child died (status \(r.status), signal/exit \(r.signo))")
    }
  }
}

/// Runs batches of cases natively (CNativeExec).
public final class NativeRunner {
  let imageSeed: UInt64
  public init(imageSeed: UInt64) { self.imageSeed = imageSeed }

  public func run(_ cases: [nx_case], timeoutMs: Int = 2000) throws -> [Outcome] {
    var results = [nx_result](repeating: nx_result(), count: cases.count)
    let rc = cases.withUnsafeBufferPointer { c in
      results.withUnsafeMutableBufferPointer { r in
        nx_run_batch(c.baseAddress, r.baseAddress, Int32(cases.count), imageSeed, Int32(timeoutMs))
      }
    }
    if rc != 0 { throw DiffTestError.native(String(cString: nx_last_error())) }
    return results.map(Outcome.init)
  }
}

public enum DiffTestError: Error, CustomStringConvertible {
  case native(String)
  case setup(String)
  public var description: String {
    switch self {
    case .native(let s): return "native runner: \(s)"
    case .setup(let s): return "interpreter setup: \(s)"
    }
  }
}

/// Runs cases in the interpreter: a 64-bit CPL0 guest whose page tables map
/// the same virtual addresses as the native child, with an IDT whose handler
/// for vector v executes `out v, al` so that the exception reaches us as a
/// port-I/O exit; the snippet ends in `hlt`.
public final class InterpreterRunner {
  let memory: GuestMemory
  let pristine: UnsafeMutablePointer<nx_image>
  let data: UnsafeMutablePointer<UInt8>
  let stack: UInt8Pointer
  let codeHost: UnsafeMutableRawPointer
  let maxInstructions: UInt64
  /// Run through the translator engine (every block translated on its first execution),
  /// and in lockstep with the interpreter too.
  let translate: Bool
  let lockstep: Bool
  var baseState = CPUState()
  /// Totals over the cases run: instructions retired inside translated blocks, lockstep
  /// blocks and differences, and the first difference described.
  public private(set) var translatedInstructions: UInt64 = 0
  public private(set) var lockstepBlocks: UInt64 = 0
  public private(set) var lockstepMismatches: UInt64 = 0
  public private(set) var firstLockstepReport: String?

  typealias UInt8Pointer = UnsafeMutablePointer<UInt8>

  // Guest-physical layout.
  static let pml4: UInt64 = 0x1000
  static let pdpt: UInt64 = 0x2000
  static let pd: UInt64 = 0x3000
  static let ptCode: UInt64 = 0x4000
  static let ptData: UInt64 = 0x5000
  static let ptStack: UInt64 = 0x6000
  static let ptLow: UInt64 = 0x7000
  static let gdt: UInt64 = 0x8000
  static let idt: UInt64 = 0x9000
  static let tss: UInt64 = 0xA000
  static let handlers: UInt64 = 0xB000
  static let istTop: UInt64 = 0xE000
  /// Virtual address of the system structures (physical 0...64 KiB).
  static let sysVA: UInt64 = 0x3800_0000
  static let codePhys: UInt64 = 0x10_0000
  static let dataPhys: UInt64 = 0x20_0000
  static let stackPhys: UInt64 = 0x30_0000

  public init(
    imageSeed: UInt64, maxInstructions: UInt64 = 20_000, translate: Bool = false,
    lockstep: Bool = false
  ) throws {
    self.maxInstructions = maxInstructions
    self.translate = translate
    self.lockstep = lockstep
    memory = try GuestMemory(size: 16 << 20)
    pristine = .allocate(capacity: 1)
    nx_image_init(pristine, imageSeed)
    guard
      let d = memory.hostPointer(GuestPhysicalAddress(Self.dataPhys), length: Int(Layout.dataSize)),
      let s = memory.hostPointer(
        GuestPhysicalAddress(Self.stackPhys), length: Int(Layout.stackSize)),
      let c = memory.hostPointer(GuestPhysicalAddress(Self.codePhys), length: 4096)
    else { throw DiffTestError.setup("guest RAM is not contiguous") }
    data = d.assumingMemoryBound(to: UInt8.self)
    stack = s.assumingMemoryBound(to: UInt8.self)
    codeHost = c
    let img = UnsafeRawPointer(pristine)
    UnsafeMutableRawPointer(data).copyMemory(from: img, byteCount: Int(Layout.dataSize))
    UnsafeMutableRawPointer(stack).copyMemory(
      from: img + Int(Layout.dataSize), byteCount: Int(Layout.stackSize))
    try buildSystem()
  }

  deinit { pristine.deallocate() }

  func w64(_ a: UInt64, _ v: UInt64) throws { try memory.write(GuestPhysicalAddress(a), value: v) }

  func buildSystem() throws {
    let user: UInt64 = PTE.present | PTE.writable | PTE.user
    try w64(Self.pml4, Self.pdpt | user)
    try w64(Self.pdpt, Self.pd | user)
    try w64(Self.pd + (Self.sysVA >> 21) * 8, Self.ptLow | user)
    try w64(Self.pd + 128 * 8, Self.ptCode | user)
    try w64(Self.pd + 256 * 8, Self.ptData | user)
    try w64(Self.pd + 384 * 8, Self.ptStack | user)
    // The system structures (first 64 KiB of RAM) at sysVA, supervisor only.
    // Nothing at low virtual addresses is mapped, as in the native child.
    for i in 0..<16 {
      try w64(Self.ptLow + UInt64(i) * 8, UInt64(i) << 12 | PTE.present | PTE.writable)
    }
    try w64(Self.ptCode, Self.codePhys | user)
    for i in 0..<Int(Layout.dataSize >> 12) {
      try w64(Self.ptData + UInt64(i) * 8, (Self.dataPhys + UInt64(i) << 12) | user)
    }
    try w64(Self.ptStack, Self.stackPhys | user)
    // GDT: null, 64-bit code, data, 64-bit TSS (busy).
    try w64(Self.gdt + 8, 0x00AF_9B00_0000_FFFF)
    try w64(Self.gdt + 16, 0x00CF_9300_0000_FFFF)
    let tssLimit: UInt64 = 0x67
    let b = Self.sysVA + Self.tss
    let tssLow =
      (tssLimit & 0xFFFF) | (b & 0xFF_FFFF) << 16 | UInt64(0x8B) << 40 | ((b >> 24) & 0xFF) << 56
    try w64(Self.gdt + 24, tssLow)
    try w64(Self.gdt + 32, b >> 32)
    // TSS: RSP0 and IST1.
    try w64(Self.tss + 4, Self.sysVA + Self.istTop)
    try w64(Self.tss + 0x24, Self.sysVA + Self.istTop)
    // IDT: every vector to its own handler, interrupt gate, IST1.
    for v in 0..<256 {
      let h = Self.sysVA + Self.handlers + UInt64(v) * 8
      let lo =
        (h & 0xFFFF) | UInt64(0x08) << 16 | UInt64(1) << 32 | UInt64(0x8E) << 40
        | ((h >> 16) & 0xFFFF) << 48
      try w64(Self.idt + UInt64(v) * 16, lo)
      try w64(Self.idt + UInt64(v) * 16 + 8, h >> 32)
      // out v, al ; hlt ; jmp $
      try memory.write(
        GuestPhysicalAddress(h - Self.sysVA),
        bytes: [0xE6, UInt8(truncatingIfNeeded: v), 0xF4, 0xEB, 0xFE, 0x90, 0x90, 0x90])
    }
    var s = CPUState()
    var cs = SegmentRegister.code64(selector: 0x08)
    cs.type = 0xB
    s.special.cs = cs
    let ds = SegmentRegister.flatData(selector: 0x10)
    s.special.ds = ds
    s.special.es = ds
    s.special.ss = ds
    s.special.fs = ds
    s.special.gs = ds
    s.special.tr = SegmentRegister(
      selector: 0x18, base: Self.sysVA + Self.tss, limit: 0x67, type: 0xB, s: false)
    s.special.gdt = DescriptorTableRegister(base: Self.sysVA + Self.gdt, limit: 0x27)
    s.special.idt = DescriptorTableRegister(base: Self.sysVA + Self.idt, limit: 0xFFF)
    s.special.cr0 = CR0.pe | CR0.mp | CR0.et | CR0.ne | CR0.wp | CR0.pg
    s.special.cr3 = Self.pml4
    s.special.cr4 = CR4.pae | CR4.osfxsr | CR4.osxmmexcpt
    s.special.efer = EFER.lme | EFER.lma | EFER.nxe | EFER.sce
    baseState = s
  }

  /// Runs one case; memory is restored to the pristine image afterwards.
  public func run(_ c: nx_case) -> Outcome {
    var c = c
    var r = nx_result()
    var saved = [UInt64](repeating: 0, count: Int(NX_MAX_PATCHES))
    let len = Int(c.code_len)
    withUnsafeBytes(of: &c.code) { src in
      codeHost.copyMemory(from: src.baseAddress!, byteCount: len)
    }
    codeHost.storeBytes(of: 0xF4, toByteOffset: len, as: UInt8.self)  // hlt
    saved.withUnsafeMutableBufferPointer {
      nx_case_begin(pristine, data, stack, &c, $0.baseAddress)
    }
    var message = ""
    do {
      r = try execute(c, codeLength: len, message: &message)
    } catch {
      r.status = Int32(NX_CRASH)
      message = "interpreter threw: \(error)"
    }
    saved.withUnsafeBufferPointer { nx_case_end(pristine, data, stack, &c, $0.baseAddress, &r) }
    var o = Outcome(r)
    if r.status == Int32(NX_CRASH) { o.kind = .failure(message) }
    return o
  }

  private func execute(_ c: nx_case, codeLength: Int, message: inout String) throws -> nx_result {
    var r = nx_result()
    var opts = InterpreterOptions()
    opts.maxInstructions = maxInstructions
    opts.timeSource = .instructionCount
    let cpu = try InterpreterCPU(memory: memory, cpuid: .default, options: opts)
    if translate { try cpu.enableTranslation(lockstep: lockstep) }
    defer {
      if translate {
        let st = cpu.statistics()
        translatedInstructions &+= st["translator.block_instructions"] ?? 0
        lockstepBlocks &+= st["translator.lockstep_blocks"] ?? 0
        lockstepMismatches &+= st["translator.lockstep_mismatches"] ?? 0
        if firstLockstepReport == nil { firstLockstepReport = cpu.lockstepReport }
      }
    }
    var s = baseState
    var cc = c
    withUnsafePointer(to: &cc.in.gpr) {
      $0.withMemoryRebound(to: UInt64.self, capacity: 16) { p in
        for i in 0..<16 { s.general[i] = p[i] }
      }
    }
    s.general.rip = Layout.code
    s.general.rflags = (c.in.rflags & UInt64(NX_FLAGS_SETTABLE)) | 2 | RFLAGS.if
    try cpu.setState(s)
    cpu.setFXImage(withUnsafeBytes(of: cc.in.fx) { Array($0) })
    let exit = try cpu.run()
    let st = try cpu.getState()
    func store(_ regs: GeneralRegisters) {
      withUnsafeMutablePointer(to: &r.out.gpr) {
        $0.withMemoryRebound(to: UInt64.self, capacity: 16) { p in
          for i in 0..<16 { p[i] = regs[i] }
        }
      }
      r.out.rflags = regs.rflags
      let fx = cpu.fxImage()
      withUnsafeMutableBytes(of: &r.out.fx) { p in
        for k in 0..<min(p.count, fx.count) { p[k] = fx[k] }
      }
    }
    switch exit {
    case .halt:
      let want = Layout.code + UInt64(codeLength) + 1
      if st.general.rip != want {
        r.status = Int32(NX_CRASH)
        message =
          "halted at rip 0x\(String(st.general.rip, radix: 16)), expected 0x\(String(want, radix: 16))"
      } else {
        r.status = Int32(NX_OK)
      }
      store(st.general)
    case .portIO(let io) where io.direction == .out && io.port < 32:
      let v = Int(io.port)
      var g = st.general
      let frame = Self.istTop - 40
      let rip: UInt64 = try memory.read(GuestPhysicalAddress(frame))
      g.rsp = try memory.read(GuestPhysicalAddress(frame + 24))
      g.rflags = try memory.read(GuestPhysicalAddress(frame + 16))
      store(g)
      r.status = Int32(NX_EXCEPTION)
      r.vector = Int32(v)
      r.fault_rip = rip
      if v == 14 { r.fault_addr = st.special.cr2 }
      if Vector.hasErrorCode(UInt8(v)) {
        r.error_code = try memory.read(GuestPhysicalAddress(frame - 8))
      }
    case .instructionLimit:
      r.status = Int32(NX_TIMEOUT)
      store(st.general)
    default:
      r.status = Int32(NX_CRASH)
      message = "unexpected exit \(exit) at rip 0x\(String(st.general.rip, radix: 16))"
      store(st.general)
    }
    return r
  }
}
