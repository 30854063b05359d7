/// QEMU's isa-debug-exit: writing v stops the VM with exit status (v << 1) | 1.
/// Registered at 0xF4 with 4 ports, like `-device isa-debug-exit,iobase=0xf4,iosize=4`.
public final class DebugExitDevice: PortIODevice {
  private let control: MachineControl
  public init(control: MachineControl) { self.control = control }

  public func ioRead(offset: UInt16, size: Int) -> UInt32 {
    UInt32(truncatingIfNeeded: allOnes(size))
  }

  public func ioWrite(offset: UInt16, size: Int, value: UInt32) {
    // Like QEMU, the status is taken modulo 256 by the process exit.
    control.requestStop(.debugExit(status: Int32(truncatingIfNeeded: (value << 1) | 1)))
  }
}
