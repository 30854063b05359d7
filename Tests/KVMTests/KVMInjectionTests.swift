import Dispatch
import Engine
import KVM
import Memory
import X86
import XCTest

/// An interrupt controller stand-in: one vector (and optionally an NMI) pending
/// until the CPU acknowledges it.
private final class OneShotInterrupts: InterruptInput {
  var vector: UInt8?
  var nmi = false
  var acknowledged = 0
  init(vector: UInt8?, nmi: Bool = false) {
    self.vector = vector
    self.nmi = nmi
  }
  var hasPendingInterrupt: Bool { vector != nil }
  func acknowledgeInterrupt() -> UInt8? {
    defer { vector = nil }
    acknowledged += 1
    return vector
  }
  var hasPendingNMI: Bool { nmi }
  func acknowledgeNMI() { nmi = false }
}

/// The KVM engine without an in-kernel irqchip: the VMM's controllers, interrupts
/// injected with KVM_INTERRUPT / KVM_NMI, interrupt windows (what the machine uses).
/// An extension, so the tests share KVMTests' fixtures and run as KVMTests.
extension KVMTests {
  /// Real mode: sti; jmp $ — spins with IF set, so only an interrupt window
  /// (or the injected interrupt) gets it out.
  static let realStiSpin: [UInt8] = [0xFB, 0xEB, 0xFE]
  /// Real mode: cli; out 0x11,al; sti; hlt; jmp $-1 — asks for its interrupt with IF clear.
  static let realCliOutStiHalt: [UInt8] = [0xFA, 0xE6, 0x11, 0xFB, 0xF4, 0xEB, 0xFD]
  /// Handler: mov al, 0x42; out 0x10, al; iret.
  static let realHandler: [UInt8] = [0xB0, 0x42, 0xE6, 0x10, 0xCF]
  static let handlerAddress: UInt64 = 0x2000

  func makeInjectedGuest(code: [UInt8], vector: UInt8) throws -> KVMVirtualCPU {
    let (vm, vcpu) = try makeGuest(code: code, irqChip: false)
    try vm.memory.write(GuestPhysicalAddress(Self.handlerAddress), bytes: Self.realHandler)
    try vm.memory.write(
      GuestPhysicalAddress(UInt64(vector) * 4), value: UInt16(Self.handlerAddress))
    try vm.memory.write(GuestPhysicalAddress(UInt64(vector) * 4 + 2), value: UInt16(0))
    try vcpu.setState(Self.realModeState())
    return vcpu
  }

  /// Records what this KVM offers for interrupt delivery (the choice in ARCHITECTURE.md
  /// rests on it); on KVM-PVM every one of these was measured present.
  func testProbeInterruptCapabilities() throws {
    try requireKVM()
    let host = KVMHost.probe(devicePath: Self.devicePath)
    let caps = Dictionary(host.capabilities.map { ($0.name, $0.value) }) { a, _ in a }
    print(
      "KVMTests: \(host.kind.rawValue): "
        + host.capabilities.map { "\($0.name)=\($0.value)" }.joined(separator: " "))
    for name in [
      "IRQCHIP", "PIT2", "SPLIT_IRQCHIP", "USER_NMI", "X86_USER_SPACE_MSR", "X86_MSR_FILTER",
    ] {
      XCTAssertNotNil(caps[name], "\(name) not probed")
    }
    XCTAssertGreaterThan(caps["IMMEDIATE_EXIT"] ?? 0, 0, "kick() needs KVM_CAP_IMMEDIATE_EXIT")
  }

  func testHaltedGuestTakesAnInjectedInterrupt() throws {
    let vcpu = try makeInjectedGuest(code: Self.realCliOutStiHalt, vector: 0x20)
    let pic = OneShotInterrupts(vector: 0x20)
    vcpu.interruptInput = pic
    // IF is clear at the OUT: the vector must wait, not be acknowledged.
    XCTAssertEqual(try runOnce(vcpu), out(0x11, 1, 0))
    XCTAssertEqual(pic.acknowledged, 0)
    // STI; HLT: KVM stops at HLT (or opens the window first); either way the next
    // entry injects the vector and the handler runs.
    var exit = try runOnce(vcpu)
    if exit == .halt { exit = try runOnce(vcpu) }
    XCTAssertEqual(exit, out(0x10, 1, 0x42))
    XCTAssertEqual(pic.acknowledged, 1)
    XCTAssertEqual(vcpu.statistics()["kvm.interrupts_injected"], 1)
    // IRET returns to the HLT loop; nothing else is pending.
    XCTAssertEqual(try runOnce(vcpu), .halt)
  }

  func testInterruptWindowOpensForASpinningGuest() throws {
    let vcpu = try makeInjectedGuest(code: Self.realStiSpin, vector: 0x21)
    let pic = OneShotInterrupts(vector: 0x21)
    vcpu.interruptInput = pic
    // Before the first entry KVM says nothing about IF: a window is requested, and
    // KVM_EXIT_IRQ_WINDOW_OPEN after STI lets the vCPU inject. runOnce fails the
    // test (kicks and reports .interrupted) if the window never opens.
    XCTAssertEqual(try runOnce(vcpu, timeout: 5), out(0x10, 1, 0x42))
    XCTAssertEqual(pic.acknowledged, 1)
  }

  func testNMIIsInjected() throws {
    let vcpu = try makeInjectedGuest(code: Self.realCliOutStiHalt, vector: 2)
    let source = OneShotInterrupts(vector: nil, nmi: false)
    vcpu.interruptInput = source
    XCTAssertEqual(try runOnce(vcpu), out(0x11, 1, 0))
    // An NMI ignores IF; raise it while the guest still has interrupts disabled.
    source.nmi = true
    var exit = try runOnce(vcpu)
    if exit == .halt { exit = try runOnce(vcpu) }
    XCTAssertEqual(exit, out(0x10, 1, 0x42))
    XCTAssertFalse(source.nmi)
    XCTAssertEqual(vcpu.statistics()["kvm.nmis_injected"], 1)
  }
}

/// A platform whose only state is the local APIC's task-priority class.
private final class TPROnlyPlatform: PlatformHooks {
  var tpr: UInt8 = 3
  func readTSC() -> UInt64 { 0 }
  func writeTSC(_ value: UInt64) {}
  func readMSR(_ index: UInt32) -> UInt64? { nil }
  func writeMSR(_ index: UInt32, value: UInt64) -> Bool { false }
  var taskPriorityClass: UInt8? { tpr }
  func setTaskPriorityClass(_ value: UInt8) { tpr = value }
}

extension KVMTests {
  /// 64-bit: mov eax, 9; mov cr8, rax; out 0x80, al; mov rax, cr8; out 0x81, eax; hlt
  static let longCR8: [UInt8] = [
    0xB8, 0x09, 0, 0, 0, 0x44, 0x0F, 0x22, 0xC0, 0xE6, 0x80, 0x44, 0x0F, 0x20, 0xC0, 0xE7, 0x81,
    0xF4,
  ]

  /// CR8 is the VMM's LAPIC TPR on KVM too: a guest MOV to CR8 reaches the
  /// platform, and a TPR the platform changed is what MOV from CR8 reads.
  func testCR8FollowsThePlatformTPR() throws {
    let (vm, vcpu) = try makeGuest(code: Self.longCR8)
    try vcpu.setState(Self.longModeState(memory: vm.memory))
    let platform = TPROnlyPlatform()
    vcpu.platform = platform
    XCTAssertEqual(try runOnce(vcpu), out(0x80, 1, 9))
    XCTAssertEqual(platform.tpr, 9)
    platform.tpr = 5  // as a guest write to the APIC's TPR register would
    XCTAssertEqual(try runOnce(vcpu), out(0x81, 4, 5))
    XCTAssertEqual(try runOnce(vcpu), .halt)
  }
}
