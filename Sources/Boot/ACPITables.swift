import Memory

/// What the ACPI tables describe: the platform layout (LAPICs, the IOAPIC,
/// ISA IRQ0 on GSI 2, the SCI, the PIIX4-like PM block, legacy devices, the
/// PCI root bridge and its INTx routing) plus the CPU count.
public struct ACPIConfig: Equatable {
  public var cpuCount: Int = 1
  /// The one description of ports, IRQs and windows the tables are generated from.
  public var platform = PlatformLayout()
  /// Advertise the PM timer; turn off if the VMM has no PM timer device (Linux then skips acpi_pm).
  public var pmTimer: Bool = true
  /// SLP_TYP for S5 in \_S5 (QEMU's PIIX4 PM powers off on 0; ours uses 5).
  public var s5SleepType: UInt16 = ACPITables.s5SleepType
  /// Describe COM1, the i8042 and the RTC in the DSDT, so Linux finds them via PNP as under QEMU.
  public var legacyDevices: Bool = true
  /// Describe the PCI root bridge `PCI0` (bus 0, config ports, BAR window, `_PRT`).
  public var pciRootBridge: Bool = true

  public init(cpuCount: Int = 1) { self.cpuCount = cpuCount }

  public var localAPICAddress: UInt32 {
    get { UInt32(truncatingIfNeeded: platform.localAPICBase) }
    set { platform.localAPICBase = UInt64(newValue) }
  }
  public var ioapicID: UInt8 {
    get { platform.ioapicID }
    set { platform.ioapicID = newValue }
  }
  public var ioapicAddress: UInt32 {
    get { UInt32(truncatingIfNeeded: platform.ioapicBase) }
    set { platform.ioapicBase = UInt64(newValue) }
  }
  public var sciIRQ: UInt8 {
    get { platform.sciIRQ }
    set { platform.sciIRQ = newValue }
  }
  /// PM1a event block (4 bytes: PM1_STS, PM1_EN), control block (2 bytes) and the
  /// PM timer (4 bytes, 32-bit counter at 3.579545 MHz) follow each other from here.
  public var pmBase: UInt16 {
    get { platform.pmBase }
    set { platform.pmBase = newValue }
  }

  public var pm1aEventBlock: UInt16 { pmBase }
  public var pm1aControlBlock: UInt16 { pmBase + 4 }
  public var pmTimerBlock: UInt16 { pmBase + 8 }
}

/// The ACPI tables of a PC without SMM or PCI firmware: RSDP v2, XSDT, RSDT,
/// FADT (revision 6, not hardware-reduced), FACS, MADT and a small DSDT.
///
/// What the VMM must emulate for these tables to be honest (defaults):
/// - PM1a_EVT_BLK 0x600-0x603: PM1_STS (write 1 to clear), PM1_EN.
/// - PM1a_CNT_BLK 0x604-0x605: SCI_EN (bit 0) must read as 1, since there is no
///   SMI_CMD to switch into ACPI mode; a write with SLP_EN (bit 13) set and
///   SLP_TYP (bits 10-12) = `s5SleepType` (5) means poweroff.
/// - PM_TMR_BLK 0x608-0x60B: 32-bit free-running counter at 3.579545 MHz (TMR_VAL_EXT set).
/// - SCI on ISA IRQ 9, level triggered, active high (MADT override).
public enum ACPITables {
  /// Default SLP_TYPa/b written with SLP_EN for S5 (soft off); \_S5 in the DSDT says so.
  public static let s5SleepType: UInt16 = 5
  public static let oemID: [UInt8] = Array("SWVMM ".utf8)
  public static let oemTableID: [UInt8] = Array("SWIFTVMM".utf8)
  public static let creatorID: [UInt8] = Array("SVMM".utf8)

  /// Where each table sits, as guest-physical addresses.
  public struct Layout: Equatable {
    public var rsdp: UInt64 = 0
    public var xsdt: UInt64 = 0
    public var rsdt: UInt64 = 0
    public var fadt: UInt64 = 0
    public var facs: UInt64 = 0
    public var madt: UInt64 = 0
    public var dsdt: UInt64 = 0
    /// Bytes used from the base.
    public var size: Int = 0
  }

  /// Builds all tables as one blob meant to sit at guest-physical `base`.
  public static func build(_ config: ACPIConfig, at base: UInt64) throws -> (
    bytes: [UInt8], layout: Layout
  ) {
    guard config.cpuCount >= 1, config.cpuCount <= 255 else {
      throw BootError.unsupported(
        "ACPI tables for \(config.cpuCount) vCPUs: between 1 and 255 are supported")
    }
    guard base + 0x10000 <= 0x1_0000_0000 else {
      throw BootError.doesNotFit(
        "ACPI tables must lie below 4 GiB (asked for 0x\(String(base, radix: 16)))")
    }
    var blob: [UInt8] = []
    var layout = Layout()
    func place(_ table: [UInt8], align: Int) -> UInt64 {
      while blob.count % align != 0 { blob.append(0) }
      let at = base + UInt64(blob.count)
      blob += table
      return at
    }
    // Fixed slots first so that pointers are known before the tables that hold them.
    let dsdt = self.dsdt(config)
    let madt = self.madt(config)
    layout.rsdp = base
    blob = [UInt8](repeating: 0, count: 36)
    layout.facs = place(facs(), align: 64)
    layout.dsdt = place(dsdt, align: 16)
    layout.madt = place(madt, align: 16)
    layout.fadt = place(fadt(config, facs: layout.facs, dsdt: layout.dsdt), align: 16)
    layout.xsdt = place(sdt("XSDT", entries: [layout.fadt, layout.madt], width: 8), align: 16)
    layout.rsdt = place(sdt("RSDT", entries: [layout.fadt, layout.madt], width: 4), align: 16)
    blob.replaceSubrange(0..<36, with: rsdp(rsdt: layout.rsdt, xsdt: layout.xsdt))
    layout.size = blob.count
    return (blob, layout)
  }

  /// Writes the tables at the start of the reserved firmware area at the top of low RAM.
  /// Returns their layout; pass `layout.rsdp` to the Linux loaders.
  @discardableResult
  public static func install(_ config: ACPIConfig, into memory: GuestMemory) throws -> Layout {
    guard let area = MemoryMap.firmwareArea(for: memory) else {
      throw BootError.doesNotFit(
        "guest RAM is too small for the firmware area that holds the ACPI tables")
    }
    let (bytes, layout) = try build(config, at: area)
    guard bytes.count <= Int(MemoryMap.firmwareAreaSize) else {
      throw BootError.doesNotFit("ACPI tables (\(bytes.count) bytes) exceed the firmware area")
    }
    try memory.write(GuestPhysicalAddress(area), bytes: bytes)
    return layout
  }

  // MARK: Tables

  static func rsdp(rsdt: UInt64, xsdt: UInt64) -> [UInt8] {
    var t = Array("RSD PTR ".utf8)
    t.append(0)  // checksum of the first 20 bytes
    t += oemID
    t.append(2)  // revision: ACPI 2.0+
    t += AML.le(rsdt, 4)
    t += AML.le(36, 4)
    t += AML.le(xsdt, 8)
    t += [0, 0, 0, 0]  // extended checksum, reserved
    t[8] = checksum(t[0..<20])
    t[32] = checksum(t[0..<36])
    return t
  }

  /// A standard 36-byte header followed by `body`, checksummed.
  static func table(_ signature: String, revision: UInt8, _ body: [UInt8]) -> [UInt8] {
    var t = Array(signature.utf8)
    t += AML.le(UInt64(36 + body.count), 4)
    t.append(revision)
    t.append(0)
    t += oemID + oemTableID
    t += AML.le(1, 4)  // OEM revision
    t += creatorID
    t += AML.le(1, 4)  // creator revision
    t += body
    t[9] = checksum(t[...])
    return t
  }

  static func sdt(_ signature: String, entries: [UInt64], width: Int) -> [UInt8] {
    table(signature, revision: 1, entries.flatMap { AML.le($0, width) })
  }

  /// Generic Address Structure for an I/O port block.
  static func gas(io port: UInt16, bytes: Int) -> [UInt8] {
    guard bytes > 0, port != 0 else { return [UInt8](repeating: 0, count: 12) }
    return [1, UInt8(bytes * 8), 0, 0] + AML.le(UInt64(port), 8)
  }

  static func fadt(_ c: ACPIConfig, facs: UInt64, dsdt: UInt64) -> [UInt8] {
    var b = [UInt8](repeating: 0, count: 276 - 36)
    func put(_ offset: Int, _ v: UInt64, _ n: Int) {
      b.replaceSubrange((offset - 36)..<(offset - 36 + n), with: AML.le(v, n))
    }
    func put(_ offset: Int, _ bytes: [UInt8]) {
      b.replaceSubrange((offset - 36)..<(offset - 36 + bytes.count), with: bytes)
    }
    put(36, facs, 4)  // FIRMWARE_CTRL
    put(40, dsdt, 4)  // DSDT
    put(45, 0, 1)  // preferred PM profile: unspecified
    put(46, UInt64(c.sciIRQ), 2)  // SCI_INT
    // SMI_CMD 0: no SMM, the machine is always in ACPI mode.
    put(56, UInt64(c.pm1aEventBlock), 4)
    put(64, UInt64(c.pm1aControlBlock), 4)
    if c.pmTimer { put(76, UInt64(c.pmTimerBlock), 4) }
    put(88, 4, 1)  // PM1_EVT_LEN
    put(89, 2, 1)  // PM1_CNT_LEN
    if c.pmTimer { put(91, 4, 1) }  // PM_TMR_LEN
    put(96, 101, 2)  // P_LVL2_LAT > 100: no C2
    put(98, 1001, 2)  // P_LVL3_LAT > 1000: no C3
    put(108, 0x32, 1)  // CENTURY: CMOS register
    // IAPC_BOOT_ARCH: legacy devices, 8042 present, VGA not present.
    put(109, 0x1 | 0x2 | 0x4, 2)
    // Flags: WBINVD, PROC_C1, PWR_BUTTON and SLP_BUTTON as control-method/absent, TMR_VAL_EXT.
    put(112, 1 << 0 | 1 << 2 | 1 << 4 | 1 << 5 | (c.pmTimer ? 1 << 8 : 0), 4)
    put(131, 0, 1)  // FADT minor version: 6.0
    // X_FIRMWARE_CTRL stays 0: the spec allows only one of the two FACS pointers.
    put(140, dsdt, 8)  // X_DSDT
    put(148, gas(io: c.pm1aEventBlock, bytes: 4))
    put(172, gas(io: c.pm1aControlBlock, bytes: 2))
    if c.pmTimer { put(208, gas(io: c.pmTimerBlock, bytes: 4)) }
    return table("FACP", revision: 6, b)
  }

  static func facs() -> [UInt8] {
    var t = Array("FACS".utf8)
    t += AML.le(64, 4)
    t += [UInt8](repeating: 0, count: 24)  // hardware signature, waking vectors, global lock, flags
    t.append(2)  // version
    t += [UInt8](repeating: 0, count: 64 - t.count)
    return t
  }

  static func madt(_ c: ACPIConfig) -> [UInt8] {
    var b = AML.le(UInt64(c.localAPICAddress), 4) + AML.le(1, 4)  // PCAT_COMPAT: 8259s present
    for i in 0..<c.cpuCount {
      b += [0, 8, UInt8(i), UInt8(i)] + AML.le(1, 4)  // Processor Local APIC, enabled
    }
    b += [1, 12, c.ioapicID, 0] + AML.le(UInt64(c.ioapicAddress), 4) + AML.le(0, 4)
    // Interrupt source overrides: bus 0 (ISA), source, GSI, flags.
    b += [2, 10, 0, 0] + AML.le(UInt64(c.platform.pitGSI), 4) + AML.le(0, 2)  // PIT IRQ0
    // SCI: active high (01), level (11 << 2).
    b += [2, 10, 0, c.sciIRQ] + AML.le(UInt64(c.sciIRQ), 4) + AML.le(0x1 | 0x3 << 2, 2)
    // LINT1 of every processor is NMI; flags 0 (bus default), as QEMU reports it.
    b += [4, 6, 0xFF] + AML.le(0, 2) + [1]
    return table("APIC", revision: 5, b)
  }

  static func dsdt(_ c: ACPIConfig) -> [UInt8] {
    var sb: [UInt8] = []
    let p = c.platform
    func io(_ r: ClosedRange<UInt16>) -> [UInt8] {
      AML.Resource.io(r.lowerBound, length: UInt8(r.count))
    }
    if c.legacyDevices {
      sb += AML.device(
        "COM1",
        AML.nameDecl("_HID", AML.eisaID("PNP0501")) + AML.nameDecl("_UID", AML.integer(1))
          + AML.nameDecl(
            "_CRS", AML.Resource.template([io(p.com1Ports), AML.Resource.irq(p.com1IRQ)])))
      sb += AML.device(
        "KBD",
        AML.nameDecl("_HID", AML.eisaID("PNP0303"))
          + AML.nameDecl(
            "_CRS",
            AML.Resource.template([
              AML.Resource.io(p.i8042DataPort, length: 1),
              AML.Resource.io(p.i8042CommandPort, length: 1), AML.Resource.irq(p.i8042IRQ),
            ])))
      sb += AML.device(
        "RTC",
        AML.nameDecl("_HID", AML.eisaID("PNP0B00"))
          + AML.nameDecl(
            "_CRS", AML.Resource.template([io(p.rtcPorts), AML.Resource.irq(p.rtcIRQ)])))
    }
    if c.pciRootBridge { sb += pciRootBridge(p) }
    let body =
      AML.scope("\\_SB", sb)
      + AML.nameDecl(
        "\\_S5",
        AML.package([
          AML.integer(UInt64(c.s5SleepType)), AML.integer(UInt64(c.s5SleepType)), AML.integer(0),
          AML.integer(0),
        ]))
    // Revision 2: 64-bit AML integers.
    return table("DSDT", revision: 2, body)
  }

  /// `PCI0`: bus 0 behind config mechanism 1, the I/O ports around the config
  /// ports and the BAR window it forwards, and `_PRT` with the INTx swizzle
  /// the device manager wires (`PlatformLayout.pciINTxGSI`), as GSIs.
  static func pciRootBridge(_ p: PlatformLayout) -> [UInt8] {
    let cfg = p.pciConfigPorts
    let crs = AML.Resource.template([
      AML.Resource.wordAddress(type: 2, min: 0, max: 0xFF),
      AML.Resource.io(cfg.lowerBound, length: UInt8(cfg.count)),
      AML.Resource.wordAddress(type: 1, min: 0, max: cfg.lowerBound - 1),
      AML.Resource.wordAddress(type: 1, min: cfg.upperBound + 1, max: 0xFFFF),
      AML.Resource.dwordMemory(p.pciMMIOWindow),
    ])
    var prt: [[UInt8]] = []
    for slot in PlatformLayout.pciSlots {
      for pin in 0..<4 {
        // Address 0xSSSSFFFF: any function of the device; pin 0 = INTA#; source 0: a GSI.
        prt.append(
          AML.package([
            AML.integer(UInt64(slot) << 16 | 0xFFFF), AML.integer(UInt64(pin)), AML.integer(0),
            AML.integer(UInt64(p.pciINTxGSI(slot: slot, pin: pin + 1))),
          ]))
      }
    }
    return AML.device(
      "PCI0",
      AML.nameDecl("_HID", AML.eisaID("PNP0A03")) + AML.nameDecl("_ADR", AML.integer(0))
        + AML.nameDecl("_UID", AML.integer(0)) + AML.nameDecl("_CRS", crs)
        + AML.nameDecl("_PRT", AML.package(prt)))
  }

  /// The byte that makes the sum of `bytes` (with it counted as 0) zero mod 256.
  static func checksum<C: Collection>(_ bytes: C) -> UInt8 where C.Element == UInt8 {
    0 &- bytes.reduce(0, &+)
  }
}
