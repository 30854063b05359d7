/// Interrupt request lines as a device sees them. Each engine's side of the
/// VMM implements this: the interpreter feeds its PIC/APIC models, KVM uses KVM_IRQ_LINE.
public protocol InterruptLines: AnyObject {
  func setLevel(irq: Int, high: Bool)
}

/// One line of an `InterruptLines`, remembered so a device raises it only on change.
public final class IRQLine {
  public let number: Int
  private weak var lines: InterruptLines?
  public private(set) var level = false

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
