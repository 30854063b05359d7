/// Architectural register state shared by every engine and by the boot loaders.

/// General-purpose registers, RIP and RFLAGS.
public struct GeneralRegisters: Equatable, Sendable, Codable {
  public var rax: UInt64 = 0
  public var rbx: UInt64 = 0
  public var rcx: UInt64 = 0
  public var rdx: UInt64 = 0
  public var rsi: UInt64 = 0
  public var rdi: UInt64 = 0
  public var rsp: UInt64 = 0
  public var rbp: UInt64 = 0
  public var r8: UInt64 = 0
  public var r9: UInt64 = 0
  public var r10: UInt64 = 0
  public var r11: UInt64 = 0
  public var r12: UInt64 = 0
  public var r13: UInt64 = 0
  public var r14: UInt64 = 0
  public var r15: UInt64 = 0
  public var rip: UInt64 = 0
  /// Bit 1 is architecturally always set.
  public var rflags: UInt64 = 0x2

  public init() {}

  /// Register by its encoding number (0 = RAX ... 15 = R15).
  public subscript(index: Int) -> UInt64 {
    get {
      switch index {
      case 0: return rax
      case 1: return rcx
      case 2: return rdx
      case 3: return rbx
      case 4: return rsp
      case 5: return rbp
      case 6: return rsi
      case 7: return rdi
      case 8: return r8
      case 9: return r9
      case 10: return r10
      case 11: return r11
      case 12: return r12
      case 13: return r13
      case 14: return r14
      default: return r15
      }
    }
    set {
      switch index {
      case 0: rax = newValue
      case 1: rcx = newValue
      case 2: rdx = newValue
      case 3: rbx = newValue
      case 4: rsp = newValue
      case 5: rbp = newValue
      case 6: rsi = newValue
      case 7: rdi = newValue
      case 8: r8 = newValue
      case 9: r9 = newValue
      case 10: r10 = newValue
      case 11: r11 = newValue
      case 12: r12 = newValue
      case 13: r13 = newValue
      case 14: r14 = newValue
      default: r15 = newValue
      }
    }
  }
}

/// A segment register with its hidden descriptor cache, in the unpacked form
/// both KVM (`struct kvm_segment`) and the interpreter use.
public struct SegmentRegister: Equatable, Sendable, Codable {
  public var selector: UInt16 = 0
  public var base: UInt64 = 0
  /// Byte-granular limit (already expanded when G=1).
  public var limit: UInt32 = 0xFFFF
  /// Descriptor type field (4 bits).
  public var type: UInt8 = 0
  /// S: 1 = code/data, 0 = system.
  public var s: Bool = true
  public var dpl: UInt8 = 0
  public var present: Bool = true
  public var avl: Bool = false
  /// L: 64-bit code segment.
  public var l: Bool = false
  /// D/B: default operation size 32 bits.
  public var db: Bool = false
  public var g: Bool = false
  public var unusable: Bool = false

  public init() {}

  public init(
    selector: UInt16, base: UInt64, limit: UInt32, type: UInt8, s: Bool = true, dpl: UInt8 = 0,
    present: Bool = true, l: Bool = false, db: Bool = false, g: Bool = false
  ) {
    self.selector = selector
    self.base = base
    self.limit = limit
    self.type = type
    self.s = s
    self.dpl = dpl
    self.present = present
    self.l = l
    self.db = db
    self.g = g
  }

  /// Real-mode segment: base = selector << 4, 64 KiB limit.
  public static func realMode(selector: UInt16, code: Bool = false) -> SegmentRegister {
    SegmentRegister(
      selector: selector, base: UInt64(selector) << 4, limit: 0xFFFF, type: code ? 0xB : 0x3)
  }

  /// Flat 4 GiB 32-bit code segment.
  public static func flatCode32(selector: UInt16) -> SegmentRegister {
    SegmentRegister(selector: selector, base: 0, limit: 0xFFFF_FFFF, type: 0xB, db: true, g: true)
  }

  /// 64-bit code segment.
  public static func code64(selector: UInt16) -> SegmentRegister {
    SegmentRegister(selector: selector, base: 0, limit: 0xFFFF_FFFF, type: 0xB, l: true, g: true)
  }

  /// Flat 4 GiB read/write data segment.
  public static func flatData(selector: UInt16) -> SegmentRegister {
    SegmentRegister(selector: selector, base: 0, limit: 0xFFFF_FFFF, type: 0x3, db: true, g: true)
  }

  /// The attribute word as it sits in bits 40..55 of a descriptor
  /// (type, S, DPL, P, AVL, L, D/B, G); limit bits 16..19 excluded.
  public var attributes: UInt16 {
    var a = UInt16(type & 0xF)
    if s { a |= 1 << 4 }
    a |= UInt16(dpl & 3) << 5
    if present { a |= 1 << 7 }
    if avl { a |= 1 << 12 }
    if l { a |= 1 << 13 }
    if db { a |= 1 << 14 }
    if g { a |= 1 << 15 }
    return a
  }
}

/// GDTR / IDTR.
public struct DescriptorTableRegister: Equatable, Sendable, Codable {
  public var base: UInt64 = 0
  public var limit: UInt16 = 0xFFFF
  public init() {}
  public init(base: UInt64, limit: UInt16) {
    self.base = base
    self.limit = limit
  }
}

/// Segment, control and descriptor-table registers plus EFER and APIC base.
public struct SpecialRegisters: Equatable, Sendable, Codable {
  public var cs = SegmentRegister.realMode(selector: 0, code: true)
  public var ds = SegmentRegister.realMode(selector: 0)
  public var es = SegmentRegister.realMode(selector: 0)
  public var fs = SegmentRegister.realMode(selector: 0)
  public var gs = SegmentRegister.realMode(selector: 0)
  public var ss = SegmentRegister.realMode(selector: 0)
  public var tr = SegmentRegister(
    selector: 0, base: 0, limit: 0xFFFF, type: 0xB, s: false)
  public var ldt = SegmentRegister(
    selector: 0, base: 0, limit: 0xFFFF, type: 0x2, s: false)
  public var gdt = DescriptorTableRegister()
  public var idt = DescriptorTableRegister()
  public var cr0: UInt64 = 0x6000_0010
  public var cr2: UInt64 = 0
  public var cr3: UInt64 = 0
  public var cr4: UInt64 = 0
  public var cr8: UInt64 = 0
  public var efer: UInt64 = 0
  public var apicBase: UInt64 = 0xFEE0_0900

  public init() {}
}

/// Everything a boot loader hands to an engine to start the first vCPU.
public struct CPUState: Equatable, Sendable, Codable {
  public var general = GeneralRegisters()
  public var special = SpecialRegisters()
  public init() {}
  public init(general: GeneralRegisters, special: SpecialRegisters) {
    self.general = general
    self.special = special
  }
}
