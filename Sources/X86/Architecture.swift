/// Architectural constants: control-register bits, MSR numbers, flags,
/// exception vectors and page-table entry bits (Intel SDM vol. 3, AMD APM vol. 2).

public enum CR0 {
  public static let pe: UInt64 = 1 << 0
  public static let mp: UInt64 = 1 << 1
  public static let em: UInt64 = 1 << 2
  public static let ts: UInt64 = 1 << 3
  public static let et: UInt64 = 1 << 4
  public static let ne: UInt64 = 1 << 5
  public static let wp: UInt64 = 1 << 16
  public static let am: UInt64 = 1 << 18
  public static let nw: UInt64 = 1 << 29
  public static let cd: UInt64 = 1 << 30
  public static let pg: UInt64 = 1 << 31
}

public enum CR4 {
  public static let vme: UInt64 = 1 << 0
  public static let pvi: UInt64 = 1 << 1
  public static let tsd: UInt64 = 1 << 2
  public static let de: UInt64 = 1 << 3
  public static let pse: UInt64 = 1 << 4
  public static let pae: UInt64 = 1 << 5
  public static let mce: UInt64 = 1 << 6
  public static let pge: UInt64 = 1 << 7
  public static let pce: UInt64 = 1 << 8
  public static let osfxsr: UInt64 = 1 << 9
  public static let osxmmexcpt: UInt64 = 1 << 10
  public static let umip: UInt64 = 1 << 11
  public static let la57: UInt64 = 1 << 12
  public static let fsgsbase: UInt64 = 1 << 16
  public static let pcide: UInt64 = 1 << 17
  public static let osxsave: UInt64 = 1 << 18
  public static let smep: UInt64 = 1 << 20
  public static let smap: UInt64 = 1 << 21
}

public enum EFER {
  public static let sce: UInt64 = 1 << 0
  public static let lme: UInt64 = 1 << 8
  public static let lma: UInt64 = 1 << 10
  public static let nxe: UInt64 = 1 << 11
  public static let ffxsr: UInt64 = 1 << 14
}

public enum RFLAGS {
  public static let cf: UInt64 = 1 << 0
  public static let fixed: UInt64 = 1 << 1
  public static let pf: UInt64 = 1 << 2
  public static let af: UInt64 = 1 << 4
  public static let zf: UInt64 = 1 << 6
  public static let sf: UInt64 = 1 << 7
  public static let tf: UInt64 = 1 << 8
  public static let `if`: UInt64 = 1 << 9
  public static let df: UInt64 = 1 << 10
  public static let of: UInt64 = 1 << 11
  public static let iopl: UInt64 = 3 << 12
  public static let nt: UInt64 = 1 << 14
  public static let rf: UInt64 = 1 << 16
  public static let vm: UInt64 = 1 << 17
  public static let ac: UInt64 = 1 << 18
  public static let vif: UInt64 = 1 << 19
  public static let vip: UInt64 = 1 << 20
  public static let id: UInt64 = 1 << 21
  /// The arithmetic status flags.
  public static let status: UInt64 = cf | pf | af | zf | sf | of
}

public enum MSR {
  /// IA32_APIC_BASE bits a write may set: base (40-bit physical), global enable
  /// (11), BSP (8). x2APIC mode (10) is not offered: setting it, or a reserved bit, #GPs.
  public static let apicBaseWritable: UInt64 = 0xFF_FFFF_F000 | 1 << 11 | 1 << 8
  public static let tsc: UInt32 = 0x10
  public static let platformID: UInt32 = 0x17
  public static let apicBase: UInt32 = 0x1B
  public static let featureControl: UInt32 = 0x3A
  public static let tscAdjust: UInt32 = 0x3B
  public static let specCtrl: UInt32 = 0x48
  public static let predCmd: UInt32 = 0x49
  public static let biosSignID: UInt32 = 0x8B
  public static let mtrrCap: UInt32 = 0xFE
  public static let archCapabilities: UInt32 = 0x10A
  public static let sysenterCS: UInt32 = 0x174
  public static let sysenterESP: UInt32 = 0x175
  public static let sysenterEIP: UInt32 = 0x176
  public static let mcgCap: UInt32 = 0x179
  public static let mcgStatus: UInt32 = 0x17A
  public static let miscEnable: UInt32 = 0x1A0
  public static let mtrrDefType: UInt32 = 0x2FF
  public static let pat: UInt32 = 0x277
  public static let tscDeadline: UInt32 = 0x6E0
  public static let efer: UInt32 = 0xC000_0080
  public static let star: UInt32 = 0xC000_0081
  public static let lstar: UInt32 = 0xC000_0082
  public static let cstar: UInt32 = 0xC000_0083
  public static let fmask: UInt32 = 0xC000_0084
  public static let fsBase: UInt32 = 0xC000_0100
  public static let gsBase: UInt32 = 0xC000_0101
  public static let kernelGSBase: UInt32 = 0xC000_0102
  public static let tscAux: UInt32 = 0xC000_0103
  /// AMD hardware configuration (HWCR), on every AMD CPU since the K7.
  public static let hwcr: UInt32 = 0xC001_0015
  /// kvm-clock (KVM paravirtual MSRs, "new" range).
  public static let kvmWallClockNew: UInt32 = 0x4B56_4D00
  public static let kvmSystemTimeNew: UInt32 = 0x4B56_4D01
}

/// Exception vectors.
public enum Vector {
  public static let de: UInt8 = 0
  public static let db: UInt8 = 1
  public static let nmi: UInt8 = 2
  public static let bp: UInt8 = 3
  public static let of: UInt8 = 4
  public static let br: UInt8 = 5
  public static let ud: UInt8 = 6
  public static let nm: UInt8 = 7
  public static let df: UInt8 = 8
  public static let ts: UInt8 = 10
  public static let np: UInt8 = 11
  public static let ss: UInt8 = 12
  public static let gp: UInt8 = 13
  public static let pf: UInt8 = 14
  public static let mf: UInt8 = 16
  public static let ac: UInt8 = 17
  public static let mc: UInt8 = 18
  public static let xm: UInt8 = 19

  /// Vectors that push an error code in protected/long mode.
  public static func hasErrorCode(_ v: UInt8) -> Bool {
    switch v {
    case 8, 10, 11, 12, 13, 14, 17, 21, 29, 30: return true
    default: return false
    }
  }
}

/// Page-table entry bits common to 32-bit, PAE and 4-level paging.
public enum PTE {
  public static let present: UInt64 = 1 << 0
  public static let writable: UInt64 = 1 << 1
  public static let user: UInt64 = 1 << 2
  public static let pwt: UInt64 = 1 << 3
  public static let pcd: UInt64 = 1 << 4
  public static let accessed: UInt64 = 1 << 5
  public static let dirty: UInt64 = 1 << 6
  /// PS in a PDE/PDPTE (large page); PAT in a 4 KiB PTE.
  public static let pageSize: UInt64 = 1 << 7
  public static let global: UInt64 = 1 << 8
  public static let nx: UInt64 = 1 << 63
  /// Physical address bits 51:12 of a 4-level / PAE entry.
  public static let addressMask: UInt64 = 0x000F_FFFF_FFFF_F000
}

/// #PF error-code bits.
public enum PageFaultError {
  public static let present: UInt32 = 1 << 0
  public static let write: UInt32 = 1 << 1
  public static let user: UInt32 = 1 << 2
  public static let reserved: UInt32 = 1 << 3
  public static let fetch: UInt32 = 1 << 4
}
