import Boot
import Devices

/// A resource the device manager could not hand out, by name.
public enum DeviceManagerError: Error, Equatable, CustomStringConvertible {
  case slotOutOfRange(device: String, slot: Int)
  case slotInUse(device: String, slot: Int, by: String)
  case noFreeSlot(device: String)
  case mmioWindowFull(device: String, size: UInt64)
  case badBAR(device: String, why: String)
  case irqOutOfRange(device: String, irq: Int)
  case irqInUse(device: String, irq: Int, by: String)
  case msixVectorsExhausted(device: String, wanted: Int, left: Int)

  public var description: String {
    switch self {
    case .slotOutOfRange(let d, let s): return "\(d): PCI slot \(s) is outside 1-31"
    case .slotInUse(let d, let s, let by): return "\(d): PCI slot \(s) is already used by \(by)"
    case .noFreeSlot(let d): return "\(d): no free PCI slot on bus 0"
    case .mmioWindowFull(let d, let n):
      return "\(d): no room for a 0x\(String(n, radix: 16))-byte BAR in the PCI MMIO window"
    case .badBAR(let d, let why): return "\(d): \(why)"
    case .irqOutOfRange(let d, let i): return "\(d): IRQ \(i) does not exist on the IOAPIC"
    case .irqInUse(let d, let i, let by): return "\(d): IRQ \(i) is already used by \(by)"
    case .msixVectorsExhausted(let d, let n, let left):
      return "\(d): wants \(n) MSI-X vectors but only \(left) remain"
    }
  }
}

/// What the device manager gave one PCI device.
public struct PCIDeviceResources: Equatable {
  public var slot: Int
  /// BARs as placed in the PCI MMIO window.
  public var bars: [PCIBARMapping]
  /// The GSI its INTx pin is routed to (the DSDT's `_PRT` says the same), if it has a pin.
  public var intxGSI: Int?
}

/// Hands out the machine's resources: PCI slots on bus 0, BAR space in the
/// PCI MMIO window, exclusive ISA IRQs, shared PCI INTx lines and MSI-X
/// vectors. Everything comes from the one `PlatformLayout`, so what it hands
/// out is what the ACPI tables describe. Conflicts throw a named error.
public final class DeviceManager {
  public let layout: PlatformLayout
  public let pciHost: PCIHost
  /// Where MSI-X messages go (the interpreter's platform); nil drops them.
  public weak var msiDelivery: MSIDelivery?
  private let intx: SharedInterruptLines?
  private var slots: [Int: String] = [0: "the host bridge"]
  private var irqs: [Int: String] = [:]
  private var nextMMIO: UInt64
  private var msixLeft: Int
  /// INTx lines of attached devices, kept alive here (an IRQLine holds its lines weakly).
  public private(set) var intxLines: [Int: IRQLine] = [:]

  /// Bound on MSI-X vectors over all devices: what an in-kernel irqchip's
  /// routing table would hold, and a cap on per-vector state.
  public static let msixVectorBudget = 1024

  public init(
    layout: PlatformLayout, pciHost: PCIHost, interruptLines: InterruptLines?,
    msiDelivery: MSIDelivery? = nil
  ) {
    self.layout = layout
    self.pciHost = pciHost
    self.msiDelivery = msiDelivery
    intx = interruptLines.map { SharedInterruptLines($0) }
    nextMMIO = layout.pciMMIOWindow.lowerBound
    msixLeft = DeviceManager.msixVectorBudget
  }

  /// Reserves an ISA IRQ/GSI for one device; a second claim is refused.
  public func claimIRQ(_ irq: Int, for device: String) throws {
    guard irq >= 0, irq < layout.ioapicPins else {
      throw DeviceManagerError.irqOutOfRange(device: device, irq: irq)
    }
    let pciLines = layout.pciINTxFirstGSI..<(layout.pciINTxFirstGSI + layout.pciINTxLineCount)
    if pciLines.contains(irq) {
      throw DeviceManagerError.irqInUse(device: device, irq: irq, by: "PCI INTx routing")
    }
    if let by = irqs[irq] { throw DeviceManagerError.irqInUse(device: device, irq: irq, by: by) }
    irqs[irq] = device
  }

  /// A free slot on bus 0, or `preferred` if it is free.
  public func allocateSlot(for device: String, preferred: Int? = nil) throws -> Int {
    if let s = preferred {
      guard PlatformLayout.pciSlots.contains(s) else {
        throw DeviceManagerError.slotOutOfRange(device: device, slot: s)
      }
      if let by = slots[s] { throw DeviceManagerError.slotInUse(device: device, slot: s, by: by) }
      slots[s] = device
      return s
    }
    guard let s = PlatformLayout.pciSlots.first(where: { slots[$0] == nil }) else {
      throw DeviceManagerError.noFreeSlot(device: device)
    }
    slots[s] = device
    return s
  }

  /// Naturally aligned space for a BAR of `size` bytes (a power of two) in the window.
  public func allocateMMIO(size: UInt64, for device: String) throws -> UInt64 {
    guard size >= 16, size & (size - 1) == 0 else {
      throw DeviceManagerError.badBAR(
        device: device, why: "BAR size 0x\(String(size, radix: 16)) is not a power of two")
    }
    // Keep BARs page-aligned so each sits alone in its pages.
    let align = max(size, 4096)
    let base = (nextMMIO + align - 1) & ~(align - 1)
    guard base >= nextMMIO, base <= layout.pciMMIOWindow.upperBound,
      layout.pciMMIOWindow.upperBound - base >= size
    else { throw DeviceManagerError.mmioWindowFull(device: device, size: size) }
    nextMMIO = base + max(size, 4096)
    return base
  }

  /// Reserves `count` MSI-X vectors from the machine's budget.
  public func allocateMSIXVectors(_ count: Int, for device: String) throws {
    guard count >= 1, count <= MSIXCapability.maxVectors, count <= msixLeft else {
      throw DeviceManagerError.msixVectorsExhausted(device: device, wanted: count, left: msixLeft)
    }
    msixLeft -= count
  }

  /// Plugs a PCI device in: a slot, every declared BAR placed in the MMIO
  /// window (memory decoding on, as firmware leaves it), the INTx line its
  /// pin routes to, and the device on the PCI host. Returns what it got.
  @discardableResult
  public func addPCIDevice(
    _ device: PCIConfigSpace & PCIDevice, name: String, slot preferred: Int? = nil
  ) throws -> PCIDeviceResources {
    let slot = try allocateSlot(for: name, preferred: preferred)
    var placed: [PCIBARMapping] = []
    let savedMMIO = nextMMIO
    do {
      for (i, bar) in device.bars.enumerated() {
        guard let bar else { continue }
        let base = try allocateMMIO(size: bar.size, for: "\(name) BAR\(i)")
        device.setBARAddress(i, base)
        placed.append(PCIBARMapping(index: i, base: base, size: bar.size))
      }
    } catch {
      slots[slot] = nil
      nextMMIO = savedMMIO
      throw error
    }
    var gsi: Int?
    if device.interruptPin != 0 {
      let g = layout.pciINTxGSI(slot: slot, pin: Int(device.interruptPin))
      device.bytes[0x3C] = UInt8(truncatingIfNeeded: g)
      intxLines[slot] = IRQLine(g, lines: intx)
      gsi = g
    }
    if !placed.isEmpty {
      device.set16(0x04, device.command | PCIConfigSpace.commandMemorySpace)
    }
    try pciHost.attach(device, device: slot)
    return PCIDeviceResources(slot: slot, bars: placed, intxGSI: gsi)
  }

  /// The INTx line of the device in `slot` (nil if it has no pin or nothing is there).
  public func intxLine(slot: Int) -> IRQLine? { intxLines[slot] }
}
