/// A minimal i8042 keyboard controller: no keyboard or mouse attached, but
/// the command protocol answers and a reset request (command 0xFE, or the
/// output-port write with bit 0 clear) stops the machine cleanly.
/// Registered at ports 0x60 (offset 0, data) and 0x64 (offset 4, status/command).
public final class I8042Device: PortIODevice {
  private let control: MachineControl
  var output: [UInt8] = []
  var commandByte: UInt8 = 0x30  // both ports' clocks disabled, no interrupts
  /// A command waiting for its data byte on port 0x60.
  var pendingCommand: UInt8?

  public init(control: MachineControl) { self.control = control }

  private enum Status {
    static let outputFull: UInt8 = 1 << 0
    static let system: UInt8 = 1 << 2
    static let commandLast: UInt8 = 1 << 3
    /// Set when the keyboard is NOT inhibited by the (absent) key lock.
    static let notInhibited: UInt8 = 1 << 4
  }
  var lastWasCommand = false

  public func ioRead(offset: UInt16, size: Int) -> UInt32 {
    switch offset {
    case 0:
      return output.isEmpty ? 0 : UInt32(output.removeFirst())
    case 4:
      var s = Status.system | Status.notInhibited
      if !output.isEmpty { s |= Status.outputFull }
      if lastWasCommand { s |= Status.commandLast }
      return UInt32(s)
    default:
      return 0xFF
    }
  }

  public func ioWrite(offset: UInt16, size: Int, value: UInt32) {
    let v = UInt8(truncatingIfNeeded: value)
    switch offset {
    case 0:
      lastWasCommand = false
      guard let cmd = pendingCommand else {
        // A byte for the keyboard itself: no keyboard, answer "resend/error" like an empty port.
        output.append(0xFE)
        return
      }
      pendingCommand = nil
      switch cmd {
      case 0x60: commandByte = v
      case 0xD1 where v & 1 == 0: control.requestStop(.reset)
      default: break
      }
    case 4:
      lastWasCommand = true
      command(v)
    default:
      break
    }
  }

  private func command(_ c: UInt8) {
    switch c {
    case 0x20: output.append(commandByte)
    case 0x60, 0xD1, 0xD2, 0xD3, 0xD4: pendingCommand = c
    case 0xAA: output.append(0x55)  // self-test passed
    case 0xAB, 0xA9: output.append(0x00)  // port tests passed
    case 0xA7: commandByte |= 0x20
    case 0xA8: commandByte &= ~0x20
    case 0xAD: commandByte |= 0x10
    case 0xAE: commandByte &= ~0x10
    case 0xC0: output.append(0x00)
    case 0xD0: output.append(0x01)  // output port: A20 and reset line high
    case 0xFE: control.requestStop(.reset)
    default: break
    }
  }
}
