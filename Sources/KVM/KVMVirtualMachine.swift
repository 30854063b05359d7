import CKVM
import Engine
import Memory
import X86

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A KVM virtual machine: the VM fd, guest RAM as memory slots, the optional
/// in-kernel irqchip, and the vCPUs created from it.
///
/// With the in-kernel irqchip (the default, as Linux guests need it), KVM
/// handles HLT itself: a halted vCPU sleeps in the kernel until an interrupt
/// arrives (or `kick()`), so `.halt` exits never reach the VMM. Small test
/// guests that end in HLT want `irqChip: false`.
public final class KVMVirtualMachine {
  public let memory: GuestMemory
  public let devicePath: String
  public let hasIRQChip: Bool
  /// Non-fatal setup observations (a refused optional ioctl, a PVM quirk).
  public private(set) var notes: [String] = []

  let kvmFD: Int32
  let vmFD: Int32
  let runMapSize: Int
  private var vcpuIDs: Set<UInt32> = []

  /// Where KVM may place the real-mode TSS (3 pages) and the EPT identity
  /// map page on VT-x. Below the BIOS area in the 32-bit MMIO hole, as QEMU does.
  public static let tssAddress: UInt64 = 0xFFFB_D000
  public static let identityMapAddress: UInt64 = 0xFFFB_C000

  public init(
    memory: GuestMemory, irqChip: Bool = true, devicePath: String = KVMHost.defaultDevicePath
  ) throws {
    // Refuse scattered memory before touching /dev/kvm: a slot is one host range.
    guard memory.layout == .contiguous else {
      throw EngineError.unsupported(
        "the KVM engine needs guest memory with the .contiguous layout (each RAM region "
          + "becomes one KVM memory slot); this memory uses \(memory.layout)")
    }
    self.memory = memory
    self.devicePath = devicePath

    let kvm = ckvm_open(devicePath)
    guard kvm >= 0 else {
      var s = "cannot open \(devicePath): \(errnoDescription(-kvm))"
      if -kvm == EACCES || -kvm == EPERM { s += "; add the user to the kvm group or run as root" }
      if -kvm == ENOENT { s += "; the KVM module is not loaded or this kernel has no KVM" }
      throw EngineError.unavailable(s)
    }
    // From here on, every failure path must close what was opened.
    var vm: Int32 = -1
    do {
      let api = ckvm_get_api_version(kvm)
      guard api >= 0 else { throw kvmFailure("KVM_GET_API_VERSION", api) }
      guard api == 12 else {
        throw EngineError.unavailable("\(devicePath) speaks KVM API version \(api), not 12")
      }
      guard ckvm_check_extension(kvm, Int(CKVM_CAP_USER_MEMORY)) > 0 else {
        throw EngineError.unavailable("KVM lacks KVM_CAP_USER_MEMORY")
      }
      let size = ckvm_get_vcpu_mmap_size(kvm)
      guard size > 0 else { throw kvmFailure("KVM_GET_VCPU_MMAP_SIZE", size) }
      runMapSize = Int(size)

      vm = ckvm_create_vm(kvm)
      guard vm >= 0 else { throw kvmFailure("KVM_CREATE_VM", vm) }

      let slots = ckvm_check_extension(vm, Int(CKVM_CAP_NR_MEMSLOTS))
      if slots > 0 && memory.regions.count > Int(slots) {
        throw EngineError.unsupported(
          "guest memory has \(memory.regions.count) RAM regions but KVM offers \(slots) slots")
      }
      for (i, region) in memory.regions.enumerated() {
        guard let host = memory.contiguousPointer(region: i) else {
          throw EngineError.failed(
            "RAM region \(i) at \(region.start) has no contiguous host range")
        }
        let r = ckvm_set_user_memory_region(
          vm, UInt32(i), 0, region.start.rawValue, region.size, host)
        guard r >= 0 else {
          throw kvmFailure(
            "KVM_SET_USER_MEMORY_REGION (slot \(i), \(region.start), \(region.size) bytes)", r)
        }
      }

      // Needed by VT-x without unrestricted guest for real mode; harmless
      // elsewhere. Optional: a refusal is noted, not fatal (PVM accepts both).
      let ramOverlapsTSS = memory.regions.contains {
        $0.start.rawValue < KVMVirtualMachine.tssAddress + 3 * pageSize
          && KVMVirtualMachine.identityMapAddress < $0.end
      }
      var notes: [String] = []
      if ramOverlapsTSS {
        notes.append(
          "guest RAM covers \(hex(KVMVirtualMachine.identityMapAddress)); TSS and identity map not set"
        )
      } else {
        if ckvm_check_extension(vm, Int(CKVM_CAP_SET_TSS_ADDR)) > 0 {
          let r = ckvm_set_tss_addr(vm, KVMVirtualMachine.tssAddress)
          if r < 0 { notes.append("KVM_SET_TSS_ADDR refused: \(errnoDescription(-r))") }
        }
        if ckvm_check_extension(vm, Int(CKVM_CAP_SET_IDENTITY_MAP_ADDR)) > 0 {
          let r = ckvm_set_identity_map_addr(vm, KVMVirtualMachine.identityMapAddress)
          if r < 0 { notes.append("KVM_SET_IDENTITY_MAP_ADDR refused: \(errnoDescription(-r))") }
        }
      }

      var chip = false
      if irqChip {
        if ckvm_check_extension(vm, Int(CKVM_CAP_IRQCHIP)) > 0 {
          let r = ckvm_create_irqchip(vm)
          if r >= 0 {
            chip = true
          } else {
            notes.append("KVM_CREATE_IRQCHIP failed: \(errnoDescription(-r)); no in-kernel irqchip")
          }
        } else {
          notes.append("KVM offers no in-kernel irqchip (KVM_CAP_IRQCHIP)")
        }
      }
      hasIRQChip = chip
      self.notes = notes
    } catch {
      if vm >= 0 { _ = ckvm_close(vm) }
      _ = ckvm_close(kvm)
      throw error
    }
    kvmFD = kvm
    vmFD = vm
  }

  deinit {
    _ = ckvm_close(vmFD)
    _ = ckvm_close(kvmFD)
  }

  /// Drives an input pin of the in-kernel PIC/IOAPIC (KVM_IRQ_LINE).
  /// GSIs 0-15 reach both the PICs and the IOAPIC, 16-23 only the IOAPIC.
  public func setIRQLine(_ irq: UInt32, level: Bool) throws {
    guard hasIRQChip else {
      throw EngineError.unsupported(
        "setIRQLine(\(irq)) needs the in-kernel irqchip, which this VM does not have")
    }
    let r = ckvm_irq_line(vmFD, irq, level ? 1 : 0)
    guard r >= 0 else { throw kvmFailure("KVM_IRQ_LINE (irq \(irq), level \(level ? 1 : 0))", r) }
  }

  /// Creates vCPU `id` and, unless `cpuid` is nil, applies that CPUID policy
  /// (KVM only accepts KVM_SET_CPUID2 before the vCPU first runs).
  public func createVCPU(id: UInt32 = 0, cpuid: CPUIDPolicy? = .default) throws -> KVMVirtualCPU {
    guard !vcpuIDs.contains(id) else {
      throw EngineError.failed("vCPU \(id) already exists in this VM")
    }
    let fd = ckvm_create_vcpu(vmFD, UInt(id))
    guard fd >= 0 else { throw kvmFailure("KVM_CREATE_VCPU (id \(id))", fd) }
    var err: Int32 = 0
    guard let run = ckvm_map_run(fd, runMapSize, &err) else {
      _ = ckvm_close(fd)
      throw EngineError.failed(
        "mmap of the kvm_run page of vCPU \(id) failed: \(errnoDescription(err))")
    }
    let vcpu = KVMVirtualCPU(vm: self, id: id, fd: fd, run: run, runSize: runMapSize)
    vcpuIDs.insert(id)
    if let cpuid { try vcpu.setCPUID(cpuid) }
    return vcpu
  }
}
