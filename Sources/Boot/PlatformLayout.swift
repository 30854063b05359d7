import Memory

/// The machine's layout, written once: I/O port ranges, ISA IRQs, APIC
/// bases, the PCI hole and BAR window, PCI INTx routing and the RAM regions.
/// Bus registration (VMM), the e820 map, the MADT and DSDT (`ACPIConfig`)
/// and the boot parameters are all generated from one value of this type,
/// so a device's resources are never written twice.
public struct PlatformLayout: Equatable, Sendable {
  // MARK: Legacy I/O ports and ISA IRQs (as on a QEMU PC)

  public var debugExitPorts: ClosedRange<UInt16> = 0xF4...0xF7
  public var i8042DataPort: UInt16 = 0x60
  public var i8042CommandPort: UInt16 = 0x64
  public var i8042IRQ: UInt8 = 1
  public var com1Ports: ClosedRange<UInt16> = 0x3F8...0x3FF
  public var com1IRQ: UInt8 = 4
  public var rtcPorts: ClosedRange<UInt16> = 0x70...0x71
  public var rtcIRQ: UInt8 = 8
  /// The PIT's IRQ0 arrives on IOAPIC pin 2 (the MADT's override).
  public var pitGSI: UInt32 = 2
  /// PIIX4-like PM block: PM1a event (4 bytes), control (2), padding, PM timer (4).
  public var pmBase: UInt16 = 0x600
  public static let pmBlockLength: UInt16 = 12
  public var sciIRQ: UInt8 = 9
  public var pciConfigPorts: ClosedRange<UInt16> = 0xCF8...0xCFF
  /// QEMU's fw_cfg selector and data ports (registered with `--qemu-compat`).
  public var fwCfgPorts: ClosedRange<UInt16> = 0x510...0x511
  /// QEMU's pc-testdev (with `--qemu-compat`): scratch and flush ports, one
  /// port per interrupt line, and a RAM-like MMIO window.
  public var testDevPorts: ClosedRange<UInt16> = 0xE0...0xE7
  public var testDevIRQPorts: ClosedRange<UInt16> = 0x2000...0x2017
  public var testDevMemory: Range<UInt64> = 0xFF00_0000..<0xFF01_0000

  // MARK: Interrupt controllers

  /// The architectural reset value of IA32_APIC_BASE.
  public var localAPICBase: UInt64 = 0xFEE0_0000
  public var ioapicBase: UInt64 = 0xFEC0_0000
  public var ioapicID: UInt8 = 0
  public var ioapicPins = 24

  // MARK: PCI

  /// The 32-bit hole that RAM skips (defined with the RAM layout in Memory).
  public var pciHole: Range<UInt64> = GuestMemory.mmioHoleStart..<GuestMemory.mmioHoleEnd
  /// Where 32-bit BARs are placed: the hole below the IOAPIC.
  public var pciMMIOWindow: Range<UInt64> = GuestMemory.mmioHoleStart..<0xFEC0_0000
  /// PCI INTA#-INTD# are swizzled over GSIs 16-23 (IOAPIC pins no ISA device uses).
  public var pciINTxFirstGSI = 16
  public var pciINTxLineCount = 8
  /// Highest usable PCI device number on bus 0 (0 is the host bridge).
  public static let pciSlots = 1...31

  public init() {}

  /// The GSI that `pin` (1 = INTA# ... 4 = INTD#) of the device in `slot`
  /// raises: the conventional swizzle, which `_PRT` in the DSDT also states.
  public func pciINTxGSI(slot: Int, pin: Int) -> Int {
    pciINTxFirstGSI + (slot + pin - 1) % pciINTxLineCount
  }

  /// Guest RAM regions for `size` bytes: below the PCI hole, the rest above 4 GiB.
  public func ramRegions(size: UInt64) -> [RAMRegion] { GuestMemory.pcRegions(size: size) }

  /// The ACPI description of this layout.
  public func acpi(cpuCount: Int) -> ACPIConfig {
    var c = ACPIConfig(cpuCount: cpuCount)
    c.platform = self
    return c
  }
}
