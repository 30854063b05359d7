import Boot
import Devices

extension Machine {
  /// `--qemu-compat`: QEMU's fw_cfg and pc-testdev, which kvm-unit-tests
  /// reads and drives, at the ports and window `layout` gives them.
  func registerQEMUTestInterfaces(layout: PlatformLayout, lines: InterruptLines?) throws {
    try portBus.register(
      FirmwareConfig(ramSize: config.memorySize, cpuCount: config.cpus),
      ports: layout.fwCfgPorts, name: "fw_cfg")
    let testdev = QEMUTestDevice(interruptLines: lines, irqCount: layout.testDevIRQPorts.count)
    try portBus.register(testdev, ports: layout.testDevPorts, name: "pc-testdev")
    try portBus.register(
      testdev, ports: layout.testDevIRQPorts, name: "pc-testdev IRQ lines",
      firstOffset: QEMUTestDevice.irqOffset)
    try mmioBus.register(
      testdev, base: layout.testDevMemory.lowerBound,
      size: UInt64(layout.testDevMemory.count), name: "pc-testdev memory")
  }
}
