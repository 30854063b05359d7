/// A minimal i8042 keyboard controller with a PS/2 keyboard that has no keys of
/// its own: the command protocols (controller and keyboard) answer, so Linux's
/// atkbd binds, and the host can press Ctrl-Alt-Del (Firecracker's SendCtrlAltDel).
/// A reset request (command 0xFE, or the output-port write with bit 0 clear)
/// stops the machine cleanly. IRQ 1 is asserted while output waits and the
/// command byte enables the keyboard interrupt.
/// Registered at ports 0x60 (offset 0, data) and 0x64 (offset 4, status/command).
public final class I8042Device: PortIODevice {
  private let control: MachineControl
  var output: [UInt8] = [] {
    didSet { updateIRQ() }
  }
  var commandByte: UInt8 = 0x30 {  // both ports' clocks disabled, no interrupts
    didSet { updateIRQ() }
  }
  /// A command waiting for its data byte on port 0x60.
  var pendingCommand: UInt8?
  /// A keyboard command waiting for its argument byte (set LEDs, scan code set, typematic).
  var pendingKeyboardCommand: UInt8?
  /// The keyboard sends scan codes (after reset, or 0xF4; 0xF5 stops it).
  var scanning = true
  /// Keyboard interrupt (IRQ 1); nil in tests that poll.
  public var irq: IRQLine? {
    didSet { updateIRQ() }
  }
  /// The controller's output buffer, as a real 8042 keyboard's: bytes beyond it are dropped,
  /// so a guest that writes without reading cannot grow host memory.
  public static let outputLimit = 16

  public init(control: MachineControl) { self.control = control }

  private enum CommandByte {
    static let keyboardInterrupt: UInt8 = 1 << 0
    static let keyboardDisabled: UInt8 = 1 << 4
    /// Set-2 scan codes are translated to set 1 on their way out.
    static let translate: UInt8 = 1 << 6
  }

  private func updateIRQ() {
    irq?.set(!output.isEmpty && commandByte & CommandByte.keyboardInterrupt != 0)
  }

  private func send(_ bytes: [UInt8]) {
    output += bytes.prefix(max(0, I8042Device.outputLimit - output.count))
  }

  /// Presses and releases Ctrl, Alt and Delete, as a keyboard sends them. Returns false
  /// when the keyboard is disabled or not scanning (the guest has not set it up).
  @discardableResult
  public func pressCtrlAltDel() -> Bool {
    guard scanning, commandByte & CommandByte.keyboardDisabled == 0 else { return false }
    let translated = commandByte & CommandByte.translate != 0
    // Set 1 (translated) or set 2: Ctrl, Alt, Delete down, then up in reverse order.
    send(
      translated
        ? [0x1D, 0x38, 0xE0, 0x53, 0xE0, 0xD3, 0xB8, 0x9D]
        : [0x14, 0x11, 0xE0, 0x71, 0xE0, 0xF0, 0x71, 0xF0, 0x11, 0xF0, 0x14])
    return true
  }

  /// A byte for the keyboard itself (port 0x60 with no controller command pending).
  private func keyboard(_ v: UInt8) {
    let ack: UInt8 = 0xFA
    if let cmd = pendingKeyboardCommand {
      pendingKeyboardCommand = nil
      // Scan code set 0 asks which set is in use: always 2.
      send(cmd == 0xF0 && v == 0 ? [ack, 0x02] : [ack])
      return
    }
    switch v {
    case 0xED, 0xF0, 0xF3:
      pendingKeyboardCommand = v
      send([ack])
    case 0xEE: send([0xEE])  // echo
    case 0xF2: send([ack, 0xAB, 0x83])  // identify: an MF2 keyboard
    case 0xF4:
      scanning = true
      send([ack])
    case 0xF5, 0xF6:
      scanning = v == 0xF6
      send([ack])
    case 0xFF:
      scanning = true
      send([ack, 0xAA])  // reset: self-test passed
    default: send([ack])
    }
  }

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
      guard !output.isEmpty else { return 0 }
      // The read empties the output buffer: the line drops, and the next byte
      // raises it again, a new edge for the PIC.
      irq?.set(false)
      return UInt32(output.removeFirst())
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
        keyboard(v)
        return
      }
      pendingCommand = nil
      switch cmd {
      case 0x60: commandByte = v
      case 0xD2: send([v])  // as if the keyboard had sent it
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
    case 0x20: send([commandByte])
    case 0x60, 0xD1, 0xD2, 0xD3, 0xD4: pendingCommand = c
    case 0xAA: send([0x55])  // self-test passed
    case 0xAB, 0xA9: send([0x00])  // port tests passed
    case 0xA7: commandByte |= 0x20
    case 0xA8: commandByte &= ~0x20
    case 0xAD: commandByte |= 0x10
    case 0xAE: commandByte &= ~0x10
    case 0xC0: send([0x00])
    case 0xD0: send([0x01])  // output port: A20 and reset line high
    case 0xFE: control.requestStop(.reset)
    default: break
    }
  }
}
