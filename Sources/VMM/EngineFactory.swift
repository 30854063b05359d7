import Devices
import Engine
import Interpreter
import KVM
import Memory

/// An engine's vCPUs plus how devices reach its interrupt controller.
struct EngineInstance {
  /// Index = vCPU index = APIC ID; the first is the boot CPU.
  var cpus: [VirtualCPU]
  var cpu: VirtualCPU { cpus[0] }
  var interruptLines: InterruptLines?
  /// True when an interrupt raised by a device can wake a halted vCPU.
  var interruptsCanWake: Bool
  /// Keeps engine-wide objects (the KVM VM) alive as long as the machine.
  var owner: AnyObject?
  /// Per vCPU (software engines): sets the retired-instruction count at which
  /// `run()` returns (scheduler quantum, instruction-count time).
  var pauseAt: [(UInt64) -> Void] = []
  /// Per vCPU (software engines): instructions retired so far.
  var retired: [() -> UInt64] = []
}

enum EngineFactory {
  /// The vCPU type behind each engine kind: what the engine publishes (its CPUID features).
  static func cpuType(for kind: EngineKind) -> any VirtualCPU.Type {
    switch kind {
    case .kvm: return KVMVirtualCPU.self
    case .interpreter, .translator: return InterpreterCPU.self
    }
  }

  static func make(config: MachineConfig, memory: GuestMemory, platform: PCPlatform?) throws
    -> EngineInstance
  {
    let cpuid = try CPUIDPolicy.forEngine(config.cpuid, engine: config.engine)
    switch config.engine {
    case .kvm:
      // The VMM's own PC platform, as on the interpreter (one definition of every
      // device): no in-kernel irqchip, interrupts injected with KVM_INTERRUPT, and
      // HLT reaches the VMM, which sleeps on the doorbell like the interpreter's.
      let vm = try KVMVirtualMachine(memory: memory, irqChip: false)
      let cpu = try vm.createVCPU(id: 0, cpuid: cpuid)
      cpu.interruptInput = platform?.interrupts[0]
      cpu.platform = platform?.hooks(forCPU: 0)
      return EngineInstance(
        cpus: [cpu], interruptLines: platform?.irqs, interruptsCanWake: platform != nil, owner: vm)
    case .interpreter, .translator:
      var options = InterpreterOptions()
      options.maxInstructions = config.maxInstructions
      options.mmuMode = config.mmuMode ?? .direct
      var policy = cpuid
      if options.mmuMode == .paravirt { PVMMU.offer(in: &policy) }
      var cpus: [InterpreterCPU] = []
      for i in 0..<config.cpus {
        let cpu = try InterpreterCPU(memory: memory, cpuid: policy, options: options)
        if config.engine == .translator {
          try cpu.enableTranslation(lockstep: config.translatorLockstep)
        }
        cpu.apicID = UInt8(i)
        cpu.yieldOnPause = config.cpus > 1
        cpu.interruptInput = platform?.interrupts[i]
        cpu.platform = platform?.hooks(forCPU: i)
        cpus.append(cpu)
      }
      // unowned(unsafe): the scheduler calls these per exit, and checked `unowned` cost an
      // atomic retain and release per call; `EngineInstance.cpus` keeps every vCPU alive.
      let retired: [() -> UInt64] = cpus.map { cpu in
        { [unowned(unsafe) cpu] in cpu.instructionsRetired }
      }
      if let clock = platform?.clock as? InstructionClock {
        // One thread runs the vCPUs in turn: guest time is everything retired.
        clock.instructions = { retired.reduce(0) { $0 &+ $1() } }
      }
      return EngineInstance(
        cpus: cpus, interruptLines: platform?.irqs, interruptsCanWake: platform != nil, owner: nil,
        pauseAt: cpus.map { cpu in { [unowned(unsafe) cpu] in cpu.pauseAt = $0 } }, retired: retired
      )
    }
  }
}

/// Which engine to use when the user does not say.
public enum EngineSelection {
  /// The rule: KVM where /dev/kvm offers hardware virtualization (VT-x/AMD-V), otherwise
  /// the translator (it passes what the interpreter passes, and compiles hot code).
  public static let rule = "kvm with hardware virtualization (VT-x/AMD-V), else translator"

  public static func best() -> EngineKind {
    KVMHost.hardwareVirtualization ? .kvm : .translator
  }

  public static func hostReport() -> String {
    let host = KVMHost.probe()
    return host.report + "\nEngines: kvm, interpreter, translator"
      + "\nDefault engine: \(best().rawValue) (\(rule))"
  }
}
