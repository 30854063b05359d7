/// Everything a vCPU holds, in a form every engine reads and writes, so a
/// snapshot taken on one engine restores on another.
///
/// `msrs` holds the architectural MSRs by index (the list is `VCPUSnapshot.msrIndices`);
/// the engine saves what it has and restores what it knows. FPU, x87 and SSE state is
/// one 512-byte FXSAVE image (64-bit layout), which is also what KVM_GET_FPU returns.
public struct VCPUSnapshot: Equatable, Sendable, Codable {
  public var registers: CPUState
  /// FXSAVE image: FCW, FSW, FTW, MXCSR, ST0-7, XMM0-15.
  public var fxsave: [UInt8]
  /// XCR0 (x87 | SSE | AVX enable bits).
  public var xcr0: UInt64
  /// DR0-DR3, DR6, DR7.
  public var debugRegisters: [UInt64]
  public var msrs: [UInt32: UInt64]
  /// STI / MOV SS shadow: no interrupt before the next instruction.
  public var interruptShadow: Bool
  /// An NMI is being handled (blocked until IRET).
  public var nmiBlocked: Bool
  public var halted: Bool
  /// Instructions retired so far (interpreter engines; instruction-count time reads it).
  public var instructionsRetired: UInt64
  /// A value the VMM supplied for an IN or MMIO read whose instruction has not
  /// retired yet (the interpreter finishes it on its next run).
  public var pendingRead: PendingRead?

  public struct PendingRead: Equatable, Sendable, Codable {
    public var mmio: Bool
    /// Port | size << 16, or the MMIO address.
    public var key: UInt64
    public var value: UInt64
    public init(mmio: Bool, key: UInt64, value: UInt64) {
      self.mmio = mmio
      self.key = key
      self.value = value
    }
  }

  /// Interpreter engines between two exits of one instruction: the MMIO accesses the
  /// device has seen for it, and the writes of a retired instruction not yet handed to
  /// the VMM. Absent (nil) in snapshots taken between instructions and in older files.
  public var mmio: MMIOProgress?

  public struct MMIOProgress: Equatable, Sendable, Codable {
    /// Accesses already made, in program order; a read carries the value it returned.
    public var done: [Access]
    public var queuedWrites: [Access]
    public struct Access: Equatable, Sendable, Codable {
      public var address: UInt64
      public var size: Int
      public var isWrite: Bool
      public var value: UInt64
      public init(address: UInt64, size: Int, isWrite: Bool, value: UInt64) {
        self.address = address
        self.size = size
        self.isWrite = isWrite
        self.value = value
      }
    }
    public init(done: [Access], queuedWrites: [Access]) {
      self.done = done
      self.queuedWrites = queuedWrites
    }
  }

  public init(
    registers: CPUState, fxsave: [UInt8], xcr0: UInt64 = 1, debugRegisters: [UInt64] = [],
    msrs: [UInt32: UInt64] = [:], interruptShadow: Bool = false, nmiBlocked: Bool = false,
    halted: Bool = false, instructionsRetired: UInt64 = 0
  ) {
    self.registers = registers
    self.fxsave = fxsave
    self.xcr0 = xcr0
    self.debugRegisters = debugRegisters
    self.msrs = msrs
    self.interruptShadow = interruptShadow
    self.nmiBlocked = nmiBlocked
    self.halted = halted
    self.instructionsRetired = instructionsRetired
  }

  /// The MSRs a snapshot carries besides those in `registers` (EFER, FS/GS base, APIC base).
  /// TSC, TSC deadline and kvm-clock belong to the platform where it is emulated.
  public static let msrIndices: [UInt32] =
    [
      MSR.star, MSR.lstar, MSR.cstar, MSR.fmask, MSR.kernelGSBase, MSR.tscAux, MSR.pat,
      MSR.sysenterCS, MSR.sysenterESP, MSR.sysenterEIP, MSR.miscEnable, MSR.mtrrDefType,
      MSR.mcgStatus, MSR.specCtrl, MSR.featureControl, MSR.tscAdjust, MSR.biosSignID,
      MSR.tsc, MSR.tscDeadline, MSR.kvmSystemTimeNew, MSR.kvmWallClockNew, MSR.hwcr,
    ] + Array(0x200...0x20F) + [0x250, 0x258, 0x259] + Array(0x268...0x26F)

  /// MSRs an emulated platform (the interpreter's PC) owns: restored with its device state.
  public static let platformMSRs: Set<UInt32> = [
    MSR.tsc, MSR.tscDeadline, MSR.kvmSystemTimeNew, MSR.kvmWallClockNew, MSR.apicBase,
  ]
}
