import Devices
import Engine
import Memory

/// An engine's vCPU plus how devices reach its interrupt controller.
struct EngineInstance {
  var cpu: VirtualCPU
  var interruptLines: InterruptLines?
  /// True when an interrupt raised by a device can wake a halted vCPU.
  var interruptsCanWake: Bool
  /// Keeps engine-wide objects (the KVM VM) alive as long as the machine.
  var owner: AnyObject?
}

enum EngineFactory {
  static func make(config: MachineConfig, memory: GuestMemory) throws -> EngineInstance {
    throw EngineError.unavailable("engine \(config.engine.rawValue) is not wired in yet")
  }
}

/// Which engine to use when the user does not say.
public enum EngineSelection {
  /// KVM only where /dev/kvm offers hardware virtualization; otherwise the interpreter.
  public static func best() -> EngineKind { .interpreter }

  public static func hostReport() -> String { "host report not wired in yet" }
}
