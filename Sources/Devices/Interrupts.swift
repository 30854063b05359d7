/// Interrupt request lines as a device sees them. Each engine's side of the
/// VMM implements this: the interpreter feeds its PIC/APIC models, KVM uses KVM_IRQ_LINE.
public protocol InterruptLines: AnyObject {
  func setLevel(irq: Int, high: Bool)
}

/// One line of an `InterruptLines`, remembered so a device raises it only on change.
/// It holds its lines strongly: they (the interrupt controllers) never hold devices, and a
/// weak reference cost a side-table retain and release on every change of the line.
public final class IRQLine {
  public let number: Int
  private let lines: InterruptLines?
  public internal(set) var level = false

  public init(_ number: Int, lines: InterruptLines?) {
    self.number = number
    self.lines = lines
  }

  public func set(_ high: Bool) {
    guard high != level else { return }
    level = high
    lines?.setLevel(irq: number, high: high)
  }
}

/// Shared, level-triggered lines (PCI INTx): a line is asserted while any of
/// its sources asserts it. Each source is an `IRQLine`, which reports only
/// changes, so a count per line is the wired OR.
public final class SharedInterruptLines: InterruptLines {
  private let lines: InterruptLines
  private var asserted: [Int: Int] = [:]

  public init(_ lines: InterruptLines) { self.lines = lines }

  public func setLevel(irq: Int, high: Bool) {
    let before = asserted[irq, default: 0]
    let after = high ? before + 1 : max(0, before - 1)
    asserted[irq] = after
    if (before == 0) != (after == 0) { lines.setLevel(irq: irq, high: after != 0) }
  }
}
